package store

import (
	"fmt"
	"regexp"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// ValidName reports whether name is acceptable as an instance name. Names become paths,
// docker context names, socket paths and VM names, so they are kept short and plain.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid instance name %q: use 1-31 lower-case letters, digits and '-', starting with a letter or digit", name)
	}
	return nil
}
