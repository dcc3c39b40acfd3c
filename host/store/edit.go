package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/berth-dev/berth/fileshare"
	"go.yaml.in/yaml/v3"
)

// This file edits berth.yaml as a YAML node tree, so that `berth config set`, the start
// flags and the tray rewrite only the values that change: comments, key order and the
// layout of everything else stay as the user left them.

// Set applies KEY=VALUE assignments (KEY may be dotted into a map: env.NAME=value) to
// berth.yaml's text doc, validating the result with the same rules as a start. It returns
// the new config and text; on error doc is not to be written. An empty VALUE resets the key
// to its default.
func Set(doc []byte, assignments []string) (Config, []byte, error) {
	cur, err := ParseConfig(doc)
	if err != nil {
		return cur, nil, fmt.Errorf("the file is invalid already (%w); fix it with `berth config edit`", err)
	}
	tree, err := toNode(cur)
	if err != nil {
		return cur, nil, err
	}
	defTree, err := toNode(DefaultConfig())
	if err != nil {
		return cur, nil, err
	}
	for _, a := range assignments {
		key, val, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return cur, nil, fmt.Errorf("%q: want KEY=VALUE (keys: %s)", a, strings.Join(KeyNames(), ", "))
		}
		path := strings.Split(key, ".")
		k, ok := LookupKey(path[0])
		if !ok {
			return cur, nil, fmt.Errorf("unknown key %q: the keys are %s (see docs/config.md)", path[0], strings.Join(KeyNames(), ", "))
		}
		vt, err := pathType(path)
		if err != nil {
			return cur, nil, fmt.Errorf("%s: %w", key, err)
		}
		if val == "" {
			if v := nodeAt(defTree, path); v != nil {
				setPath(tree, path, v)
			} else {
				deletePath(tree, path)
			}
			continue
		}
		if len(path) > 1 {
			k.Name = strings.Join(path, ".")
		}
		vn, err := valueNode(k, vt, val)
		if err != nil {
			return cur, nil, err
		}
		setPath(tree, path, vn)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	if err := enc.Encode(tree); err != nil {
		return cur, nil, err
	}
	enc.Close()
	next, err := ParseConfig(b.Bytes())
	if err != nil {
		return cur, nil, err
	}
	if err := CheckChange(cur, next); err != nil {
		return cur, nil, err
	}
	// Changed shares are checked as a start checks them (existing directories, none of
	// the system's, no overlaps); unchanged ones are left to the start, so a share on a
	// disk unplugged for now does not block changing something else.
	if !slices.Equal(cur.Shares, next.Shares) {
		if err := fileshare.Validate(next.Shares); err != nil {
			return cur, nil, fmt.Errorf("shares: %w", err)
		}
	}
	return next, Merge(doc, next), nil
}

// pathType resolves a key path (its names made canonical in place) to the Go type of its
// value: struct fields by their yaml names, map entries by any name.
func pathType(path []string) (reflect.Type, error) {
	t := reflect.TypeFor[Config]()
	for i, p := range path {
		switch t.Kind() {
		case reflect.Struct:
			found := false
			for j := range t.NumField() {
				tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ",")
				if tag != "" && strings.EqualFold(tag, p) {
					path[i], t, found = tag, t.Field(j).Type, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("%q has no key %q", strings.Join(path[:i], "."), p)
			}
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, fmt.Errorf("%q has no sub-keys: set it as %s=VALUE", strings.Join(path[:i], "."), strings.Join(path[:i], "."))
		}
	}
	return t, nil
}

// nodeAt returns the node at path in mapping m, or nil.
func nodeAt(m *yaml.Node, path []string) *yaml.Node {
	for _, p := range path {
		if m = mapValue(m, p); m == nil {
			return nil
		}
	}
	return m
}

// CheckChange refuses changes a start cannot apply: shrinking the data disk.
func CheckChange(cur, next Config) error {
	if next.Disk < cur.Disk {
		return fmt.Errorf("disk: %d GiB is smaller than the current %d GiB: the data disk can only grow; want at least %d", next.Disk, cur.Disk, cur.Disk)
	}
	return nil
}

// valueNode turns VALUE into a node for a field of type t. Strings stay strings ("0x10"
// is not a number for arch), lists may be written comma-separated, shares as PATH[:ro].
func valueNode(k Key, t reflect.Type, val string) (*yaml.Node, error) {
	bad := func() error { return fmt.Errorf("%s: %q is not allowed: want %s", k.Name, val, k.Allowed) }
	switch {
	case t.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val}, nil
	case t.Kind() == reflect.Slice && !strings.HasPrefix(strings.TrimSpace(val), "["):
		var parts []string
		for _, p := range strings.Split(val, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		if t.Elem() == reflect.TypeFor[fileshare.Share]() {
			shares := make([]fileshare.Share, 0, len(parts))
			for _, p := range parts {
				s, err := ParseShare(p)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k.Name, err)
				}
				shares = append(shares, s)
			}
			return toNode(shares)
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, p := range parts {
			seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p})
		}
		if err := seq.Decode(reflect.New(t).Interface()); err != nil {
			return nil, bad()
		}
		return seq, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(val), &doc); err != nil || len(doc.Content) != 1 {
		return nil, bad()
	}
	n := doc.Content[0]
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return nil, bad()
	}
	// yaml decodes 2.5 into an int as 2: a whole number must be written as one (types
	// with their own YAML reading, like durations, check themselves).
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return n, nil
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.ShortTag() != "!!int" {
			return nil, bad()
		}
	}
	return n, nil
}

// ParseShare reads a share as written on the command line: PATH, PATH:ro or PATH:rw. A
// leading ~ is the home directory.
func ParseShare(s string) (fileshare.Share, error) {
	var sh fileshare.Share
	switch {
	case strings.HasSuffix(s, ":ro"):
		s, sh.ReadOnly = strings.TrimSuffix(s, ":ro"), true
	case strings.HasSuffix(s, ":rw"):
		s = strings.TrimSuffix(s, ":rw")
	}
	if s == "~" || strings.HasPrefix(s, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return sh, err
		}
		s = filepath.Join(home, s[1:])
	}
	if !filepath.IsAbs(s) {
		return sh, fmt.Errorf("%q is not an absolute path: want PATH or PATH:ro with PATH absolute", s)
	}
	sh.Path = filepath.Clean(s)
	return sh, nil
}

// Get returns KEY's value in c: scalars as they are, lists and maps as YAML.
func Get(c Config, key string) (string, error) {
	path := strings.Split(key, ".")
	k, ok := LookupKey(path[0])
	if !ok {
		return "", fmt.Errorf("unknown key %q: the keys are %s (see docs/config.md)", path[0], strings.Join(KeyNames(), ", "))
	}
	path[0] = k.Name
	n, err := toNode(c)
	if err != nil {
		return "", err
	}
	for _, p := range path {
		if n = mapValue(n, p); n == nil {
			return "", nil // an empty list or map, or an unset map key
		}
	}
	if n.Kind == yaml.ScalarNode {
		return n.Value, nil
	}
	b, err := yaml.Marshal(n)
	return strings.TrimSuffix(string(b), "\n"), err
}

// Merge returns berth.yaml's text doc rewritten to hold c: only values that differ are
// replaced (keeping the comments around them), keys the file lacks are added only when
// they differ from the default, and keys c leaves out (empty optional ones) are removed.
// A doc that is empty or not a YAML mapping is replaced by c.Marshal().
func Merge(doc []byte, c Config) []byte {
	var d yaml.Node
	if yaml.Unmarshal(doc, &d) != nil || d.Kind != yaml.DocumentNode || len(d.Content) != 1 || d.Content[0].Kind != yaml.MappingNode {
		return c.Marshal()
	}
	m := d.Content[0]
	next, err := toNode(c)
	if err != nil {
		return c.Marshal()
	}
	def, _ := toNode(DefaultConfig())
	for i := 0; i+1 < len(next.Content); i += 2 {
		k, v := next.Content[i], next.Content[i+1]
		if old := mapValue(m, k.Value); old != nil {
			if !sameValue(old, v) {
				v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
				*old = *v
			}
			continue
		}
		if dv := mapValue(def, k.Value); dv == nil || !sameValue(dv, v) {
			m.Content = append(m.Content, k, v)
		}
	}
	for i := 0; i+1 < len(m.Content); {
		if mapValue(next, m.Content[i].Value) == nil {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			continue
		}
		i += 2
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&d); err != nil {
		return c.Marshal()
	}
	enc.Close()
	return b.Bytes()
}

// toNode encodes v as a node (a mapping for a struct).
func toNode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return n.Content[0], nil
	}
	return &n, nil
}

// mapValue returns the value of key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setPath sets the value at path in mapping m, creating mappings on the way.
func setPath(m *yaml.Node, path []string, v *yaml.Node) {
	for i, p := range path {
		cur := mapValue(m, p)
		if i == len(path)-1 {
			if cur != nil {
				*cur = *v
			} else {
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, v)
			}
			return
		}
		if cur == nil {
			cur = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, cur)
		} else if cur.Kind != yaml.MappingNode {
			*cur = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		m = cur
	}
}

// deletePath removes the key at path, if present.
func deletePath(m *yaml.Node, path []string) {
	for _, p := range path[:len(path)-1] {
		if m = mapValue(m, p); m == nil {
			return
		}
	}
	if m.Kind != yaml.MappingNode {
		return
	}
	last := path[len(path)-1]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == last {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// sameValue compares two nodes by what they decode to.
func sameValue(a, b *yaml.Node) bool {
	var x, y any
	if a.Decode(&x) != nil || b.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(normalize(x), normalize(y))
}

// normalize makes 2 and 2.0 equal.
func normalize(v any) any {
	switch t := v.(type) {
	case int:
		return float64(t)
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = normalize(t[k])
		}
	}
	return v
}

// AsMap is the config keyed as in berth.yaml, for JSON output.
func (c Config) AsMap() map[string]any {
	m := map[string]any{}
	yaml.Unmarshal(c.Marshal(), &m)
	return m
}
