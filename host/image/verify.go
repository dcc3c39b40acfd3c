package image

// Verify checks an installed image directory: the required files, and every artifact's
// size and sha256 that its manifest lists (berth doctor).
func Verify(dir, arch string) error { return verifyDir(dir, arch) }
