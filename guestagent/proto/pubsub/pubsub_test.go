package pubsub

import "testing"

func TestDropNew(t *testing.T) {
	var tp Topic[int]
	ch, cancel := tp.Subscribe(2, 0)
	for i := 1; i <= 5; i++ {
		tp.Publish(i) // never blocks, although nobody reads
	}
	var got []int
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Errorf("got %v, want the initial value then the first two", got)
	}
	cancel()
	tp.Publish(6)
	if len(ch) != 0 || tp.Len() != 0 {
		t.Error("a cancelled subscriber still gets values")
	}
}

func TestKeepLatest(t *testing.T) {
	tp := Topic[string]{Mode: KeepLatest}
	ch, cancel := tp.Subscribe(0, "first")
	defer cancel()
	tp.Publish("second")
	tp.Publish("third")
	if v := <-ch; v != "third" {
		t.Errorf("got %q, want the latest value", v)
	}
	if len(ch) != 0 {
		t.Errorf("%d stale values left", len(ch))
	}
}
