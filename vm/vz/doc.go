// Package vz is the macOS driver: it runs the guest in-process with Apple's
// Virtualization.framework through github.com/Code-Hex/vz/v3 (imported as vzlib; this
// package keeps the name vz so hostd writes vz.New).
//
// Layout: plan.go (no build tag) maps a vm.Config onto a Plan (device list, CPU/memory clamps,
// kernel command line, rejections) and is unit-tested on Linux; driver_darwin.go
// (darwin && cgo) turns the Plan into vz calls; driver_stub.go makes New fail clearly
// elsewhere, including a darwin build with CGO_ENABLED=0.
//
// Devices: Linux boot loader (kernel, initrd, command line with console=hvc0), one virtio-blk
// per vm.Disk (raw image, read-only as asked, Disk.ID as the block device identifier, i.e. the
// serial the agent looks for; needs macOS 12.3), one virtio-net per vm.NIC on a file-handle
// attachment (the netproxy datagram socket) with the NIC's MAC, one virtio socket device (the
// agent channel), one virtio-fs device per vm.Share (single directory share, read-only
// honoured; macOS 12), the Rosetta virtio-fs share with tag "rosetta" on Apple silicon when
// Rosetta for Linux is installed (macOS 13; never installed automatically, because that
// shows a license prompt), an entropy device, a traditional memory balloon, and a virtio
// console serial port writing to vm.Config.ConsoleLog. Stop (force) needs macOS 12, so the
// practical floor is macOS 12.3.
//
// # Threads and dispatch queues
//
// Virtualization.framework requires every call on a VZVirtualMachine (and its devices) to
// happen on the dispatch queue the machine was created with. Code-Hex/vz v3 handles that
// itself: NewVirtualMachine creates a private serial queue per machine (makeDispatchQueue in
// virtualization_11.m) and passes it to -initWithConfiguration:queue:; Start, Stop,
// RequestStop, CanStart/CanStop/..., SocketDevices()[i].Connect and Listen all
// dispatch_sync/dispatch_async onto that queue, and the state observer and completion
// handlers run there and hand results back to Go over channels. Configuration objects are
// plain objects that may be built on any thread.
//
// So the daemon needs no runtime.LockOSThread and no main-thread run loop (NSApplication) for
// a headless VM: any goroutine may call the Driver. Two rules remain:
//   - never call back into vz from inside a vz callback (none of ours do: the state watcher
//     only reads a Go channel), or the serial queue deadlocks on itself;
//   - only StartGraphicApplication (a window with the VM's display) needs the process's
//     main thread (runtime.LockOSThread in an init func plus running it from main). berth
//     runs headless and never calls it.
//
// # Entitlement
//
// The binary that creates the VM (berth, which runs hostd) must be code-signed with the
// com.apple.security.virtualization entitlement, or VZVirtualMachineConfiguration.validate
// fails. installer/macos/sign.sh signs it (ad hoc by default).
//
// # Lifetime of what the caller hands in
//
// vm.NIC.Conn: vz wraps the descriptor in an NSFileHandle without taking ownership, so the
// caller must keep the *os.File open (and referenced) until Start's channel has reported the
// exit. The Driver keeps a reference, so holding the Driver is enough.
//
// # Stopping
//
// Stop without force asks the guest to power off (VZ's requestStop: an ACPI/GPIO power button
// press in the guest, which PID 1 must act on, for example by watching the power-button input
// device) and waits, bounded by ctx or DefaultStopGrace, for the VM to stop; then it forces.
// hostd should first ask the agent to shut down over the agent channel, which is the path that
// stops containers cleanly; the power button is the fallback.
package vz
