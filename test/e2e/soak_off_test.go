//go:build e2e && !soak

package e2e

// soakRun: the long checks are left to make soak.
const soakRun = false
