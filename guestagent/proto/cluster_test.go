package proto

import "testing"

func TestClusterFlag(t *testing.T) {
	c, err := ParseClusterFlag("demo-1,5A:94:EF:77:01:01,10.77.1.11/24")
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "demo-1" || c.MAC != "5a:94:ef:77:01:01" || c.Prefix.String() != "10.77.1.11/24" {
		t.Fatalf("parsed %+v", c)
	}
	if got := c.String(); got != "demo-1,5a:94:ef:77:01:01,10.77.1.11/24" {
		t.Fatalf("String() = %q", got)
	}
	for _, bad := range []string{"", "demo-1", "demo-1,xx,10.77.1.11/24", "demo-1,5a:94:ef:77:01:01,10.77.1.11", ",5a:94:ef:77:01:01,10.77.1.11/24", "a,5a:94:ef:77:01:01,fd00::1/64"} {
		if _, err := ParseClusterFlag(bad); err == nil {
			t.Errorf("ParseClusterFlag(%q) accepted", bad)
		}
	}
}
