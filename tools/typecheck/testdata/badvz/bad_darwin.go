//go:build darwin && berth_typecheck_fixture

// Package badvz calls Code-Hex/vz wrongly on purpose. typecheck_test.go checks that the
// checker reports exactly these errors, at these lines; nothing builds this package (it lives
// under testdata and needs the berth_typecheck_fixture tag).
package badvz

import (
	vzlib "github.com/Code-Hex/vz/v3"
)

func Bad() error {
	_, err := vzlib.NewLinuxBootLoader(42) // want: cannot use 42
	if err != nil {
		return err
	}
	_, err = vzlib.NewVirtualMachineConfiguration(nil, 2) // want: not enough arguments
	return err
}

// Good uses the API correctly, so the checker is seen to resolve vz rather than fail on
// everything.
func Good() (uint, error) {
	boot, err := vzlib.NewLinuxBootLoader("/k", vzlib.WithCommandLine("console=hvc0"))
	if err != nil {
		return 0, err
	}
	conf, err := vzlib.NewVirtualMachineConfiguration(boot, 2, 1<<30)
	if err != nil {
		return 0, err
	}
	_ = conf
	return vzlib.VirtualMachineConfigurationMaximumAllowedCPUCount(), nil
}
