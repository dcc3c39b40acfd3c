//go:build e2e && soak

package e2e

// soakRun: the long checks run (make soak).
const soakRun = true
