package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpCommand connects to QEMU's QMP socket, negotiates capabilities and runs one command.
// Connections are short-lived: QMP is used only to stop the VM.
func qmpCommand(ctx context.Context, path, command string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("failed to connect to QMP at %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	r := bufio.NewReader(c)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := readQMP(r, &greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("no QMP greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return err
		}
		if err := waitReturn(r); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
	}
	return nil
}

// waitReturn reads messages, skipping asynchronous events, until the command's answer.
func waitReturn(r *bufio.Reader) error {
	for {
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := readQMP(r, &m); err != nil {
			return err
		}
		switch {
		case m.Error != nil:
			return fmt.Errorf("%s", m.Error.Desc)
		case m.Return != nil:
			return nil
		}
	}
}

func readQMP(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}
