package plist

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	in := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- a comment -->
<plist version="1.0">
<dict>
	<key>S</key><string>a &amp; b</string>
	<key>I</key><integer>42</integer>
	<key>R</key><real>1.5</real>
	<key>T</key><true/>
	<key>F</key><false/>
	<key>A</key><array><string>x</string><integer>1</integer></array>
	<key>D</key><dict><key>k</key><string>v</string></dict>
	<key>B</key><data>aGk=</data>
</dict>
</plist>`
	got, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"S": "a & b", "I": int64(42), "R": 1.5, "T": true, "F": false,
		"A": []any{"x", int64(1)}, "D": map[string]any{"k": "v"}, "B": []byte("hi")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{
		`<dict/>`,
		`<plist><dict><key>a</key></dict></plist>`,
		`<plist><dict><string>x</string></dict></plist>`,
		`<plist><dict><key>a</key><string>1</string><key>a</key><string>2</string></dict></plist>`,
		`<plist><foo/></plist>`,
		`<plist><dict></dict><dict></dict></plist>`,
		`<plist><integer>x</integer></plist>`,
		`<plist><dict>`,
	} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}
