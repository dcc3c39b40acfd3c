package engineconf

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// HostCAs returns the certificates of the current user's and the local machine's ROOT
// stores (the user's store shows the machine's too) as PEM, read with the crypto API.
func HostCAs() ([]byte, error) {
	var out bytes.Buffer
	var firstErr error
	for _, flags := range []uint32{windows.CERT_SYSTEM_STORE_CURRENT_USER, windows.CERT_SYSTEM_STORE_LOCAL_MACHINE} {
		name, _ := windows.UTF16PtrFromString("ROOT")
		store, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM, 0, 0,
			flags|windows.CERT_STORE_READONLY_FLAG, uintptr(unsafe.Pointer(name)))
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("failed to open the ROOT store: %w", err)
			}
			continue
		}
		var ctx *windows.CertContext
		for {
			ctx, err = windows.CertEnumCertificatesInStore(store, ctx)
			if err != nil || ctx == nil {
				break
			}
			der := unsafe.Slice(ctx.EncodedCert, ctx.Length)
			pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: bytes.Clone(der)})
		}
		windows.CertCloseStore(store, 0)
	}
	if out.Len() == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out.Bytes(), nil
}
