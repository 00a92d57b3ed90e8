//go:build unix

package auth

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockStoreFile takes an exclusive advisory lock (flock) on path + ".lock",
// creating it 0600 if needed, and returns its release. flock locks belong to
// an open file description, so the lock excludes other processes and other
// calls in this one alike. The lock file is left in place: removing it would
// let two writers lock two different files.
func lockStoreFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auth: lock credential store: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("auth: lock credential store %s.lock: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
