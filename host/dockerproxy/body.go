package dockerproxy

import (
	"encoding/json"
	"strings"
)

// checkBody applies the policy to a create request's JSON body. It returns the body to
// forward (nil when unchanged) or the refusal. A body that is not the JSON it should be is
// left for the engine to reject.
func (p *Policy) checkBody(kind int, body []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return nil, nil
	}
	var changed bool
	var err error
	switch kind {
	case kindCreateContainer:
		changed, err = p.editObject(top, "HostConfig", func(hc map[string]json.RawMessage) (bool, error) {
			c1, err := p.editBinds(hc)
			if err != nil {
				return false, err
			}
			c2, err := p.editMounts(hc, "Mounts")
			return c1 || c2, err
		})
	case kindService:
		changed, err = p.editObject(top, "TaskTemplate", func(tt map[string]json.RawMessage) (bool, error) {
			return p.editObject(tt, "ContainerSpec", func(cs map[string]json.RawMessage) (bool, error) {
				return p.editMounts(cs, "Mounts")
			})
		})
	}
	if err != nil || !changed {
		return nil, err
	}
	out, merr := json.Marshal(top)
	if merr != nil {
		return nil, nil
	}
	return out, nil
}

// editObject runs f on the object at obj[key] and stores it back when f changed it.
func (p *Policy) editObject(obj map[string]json.RawMessage, key string, f func(map[string]json.RawMessage) (bool, error)) (bool, error) {
	raw, ok := obj[key]
	if !ok {
		return false, nil
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(raw, &inner) != nil || inner == nil {
		return false, nil
	}
	changed, err := f(inner)
	if err != nil || !changed {
		return false, err
	}
	b, err := json.Marshal(inner)
	if err != nil {
		return false, nil
	}
	obj[key] = b
	return true, nil
}

// editBinds checks HostConfig.Binds: "SRC:DST[:OPTS]", SRC a host path when absolute,
// else a volume name.
func (p *Policy) editBinds(hc map[string]json.RawMessage) (bool, error) {
	raw, ok := hc["Binds"]
	if !ok {
		return false, nil
	}
	var binds []string
	if json.Unmarshal(raw, &binds) != nil {
		return false, nil
	}
	changed := false
	for i, b := range binds {
		src, rest, ok := strings.Cut(b, ":")
		if !ok {
			continue // no destination: an anonymous volume or an error for the engine
		}
		r, err := p.Resolve(src)
		if err != nil {
			return false, err
		}
		if r != src {
			binds[i] = r + ":" + rest
			changed = true
		}
	}
	if changed {
		hc["Binds"], _ = json.Marshal(binds)
	}
	return changed, nil
}

// editMounts checks a Mounts list: entries of Type "bind" have a host Source.
func (p *Policy) editMounts(obj map[string]json.RawMessage, key string) (bool, error) {
	raw, ok := obj[key]
	if !ok {
		return false, nil
	}
	var mounts []map[string]json.RawMessage
	if json.Unmarshal(raw, &mounts) != nil {
		return false, nil
	}
	changed := false
	for _, m := range mounts {
		var typ, src string
		if json.Unmarshal(m["Type"], &typ) != nil || typ != "bind" {
			continue
		}
		if json.Unmarshal(m["Source"], &src) != nil {
			continue
		}
		r, err := p.Resolve(src)
		if err != nil {
			return false, err
		}
		if r != src {
			m["Source"], _ = json.Marshal(r)
			changed = true
		}
	}
	if changed {
		obj[key], _ = json.Marshal(mounts)
	}
	return changed, nil
}
