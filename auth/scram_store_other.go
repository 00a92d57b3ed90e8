//go:build !unix

package auth

import "errors"

// lockStoreFile is only implemented where flock exists: without it,
// concurrent writers could lose each other's changes, so writes are refused.
func lockStoreFile(string) (func(), error) {
	return nil, errors.New("auth: credential store writes need flock, which this platform lacks")
}

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }
