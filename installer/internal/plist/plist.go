// Package plist decodes XML property lists (Info.plist, launchd agents, entitlements) into
// plain Go values, for the installer's tests: dict → map[string]any, array → []any,
// string/date → string, integer → int64, real → float64, true/false → bool, data → []byte.
// It is strict: unknown elements, a dict key without a value and trailing content are errors.
package plist

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Decode reads one XML plist document.
func Decode(r io.Reader) (any, error) {
	d := xml.NewDecoder(r)
	d.Strict = true
	start, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if start.Name.Local != "plist" {
		return nil, fmt.Errorf("root element <%s>, want <plist>", start.Name.Local)
	}
	first, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	v, err := value(d, first)
	if err != nil {
		return nil, err
	}
	// Only </plist> and whitespace may follow.
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return v, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return nil, fmt.Errorf("more than one value in <plist> (<%s>)", t.Name.Local)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, fmt.Errorf("text after the value: %q", t)
			}
		}
	}
}

// nextStart skips the prolog, comments, doctype and whitespace up to the next element.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errEnd{t.Name.Local}
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return xml.StartElement{}, fmt.Errorf("unexpected text %q", t)
			}
		}
	}
}

type errEnd struct{ name string }

func (e errEnd) Error() string { return "unexpected </" + e.name + ">" }

func text(d *xml.Decoder, el xml.StartElement) (string, error) {
	var s string
	err := d.DecodeElement(&s, &el)
	return s, err
}

func value(d *xml.Decoder, el xml.StartElement) (any, error) {
	switch el.Name.Local {
	case "dict":
		m := map[string]any{}
		for {
			k, err := nextStart(d)
			var end errEnd
			if errors.As(err, &end) && end.name == "dict" {
				return m, nil
			}
			if err != nil {
				return nil, err
			}
			if k.Name.Local != "key" {
				return nil, fmt.Errorf("<%s> where a <key> belongs in a dict", k.Name.Local)
			}
			key, err := text(d, k)
			if err != nil {
				return nil, err
			}
			ve, err := nextStart(d)
			if err != nil {
				return nil, fmt.Errorf("key %q has no value: %w", key, err)
			}
			v, err := value(d, ve)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("key %q twice", key)
			}
			m[key] = v
		}
	case "array":
		a := []any{}
		for {
			e, err := nextStart(d)
			var end errEnd
			if errors.As(err, &end) && end.name == "array" {
				return a, nil
			}
			if err != nil {
				return nil, err
			}
			v, err := value(d, e)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
	case "string", "date":
		return text(d, el)
	case "integer":
		s, err := text(d, el)
		if err != nil {
			return nil, err
		}
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	case "real":
		s, err := text(d, el)
		if err != nil {
			return nil, err
		}
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	case "true", "false":
		if err := d.Skip(); err != nil {
			return nil, err
		}
		return el.Name.Local == "true", nil
	case "data":
		s, err := text(d, el)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	}
	return nil, fmt.Errorf("unknown plist element <%s>", el.Name.Local)
}
