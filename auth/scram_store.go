package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The credential store is one text file, one user a line:
//
//	name:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>:roles[:topics]
//
// The middle is PostgreSQL's verifier (FormatVerifier), so credentials move
// between the two; roles are comma-separated (admin,worker) and may be empty
// (the line then ends in ':'). The optional last field holds the user's
// TopicRules (jobs.*,!jobs.admin); without it every topic is allowed. Lines
// starting with '#' and blank lines are kept as they are. The file holds no
// password, but its keys are secrets: it must not be readable by group or
// others.

// StoreCheckInterval is how often, at most, a Store looks at its file for
// changes when asked for a credential.
const StoreCheckInterval = time.Second

// maxStoreSize bounds the file a Store reads: about 300 000 users.
const maxStoreSize = 64 << 20

// Credential store errors.
var (
	// ErrBadStore reports an unusable store file: readable by group or
	// others, not a regular file, too big, or with a malformed line (the
	// error names the line number).
	ErrBadStore = errors.New("auth: bad credential store")
	// ErrUserExists means Add found the user already present.
	ErrUserExists = errors.New("auth: user already exists")
	// ErrNoSuchUser means Update or Delete did not find the user.
	ErrNoSuchUser = errors.New("auth: no such user")
)

// Store is the credential store file. It implements CredentialLookup, so a
// SCRAMServer can use it directly.
//
// Reads are served from memory. A running server picks up changes without a
// restart: LookupCredential and List look at the file (one stat) at most once
// per StoreCheckInterval and reload it when its inode, size, mode or
// modification time changed; Reload forces that (call it on SIGHUP). A reload
// that fails (a malformed line, a file made group-readable, a removed file)
// keeps the credentials already loaded and is reported by ReloadError, so a
// bad edit never locks every user out.
//
// Writes (Add, Update, Delete) take an advisory lock on a file next to the
// store (path + ".lock", left in place), read the file afresh, change it and
// replace it atomically: a temporary file in the same directory, created
// 0600, written and fsynced, renamed over the store, then the directory
// fsynced. Concurrent writers, in this process or others, therefore never
// lose each other's changes, and readers see the old file or the new one,
// never half of one. Comments and the order of lines survive writes.
//
// A Store is safe for concurrent use.
type Store struct {
	path string
	now  func() time.Time

	state atomic.Pointer[storeState]

	// reloadMu serializes installing a new state (reloads and writes).
	reloadMu sync.Mutex

	// mu guards nextCheck and reloadErr.
	mu        sync.Mutex
	nextCheck time.Time
	reloadErr error
}

// storeState is one loaded version of the file.
type storeState struct {
	users map[string]Credential
	info  fs.FileInfo
}

// StoreUser is a user as List returns it.
type StoreUser struct {
	Name       string
	Credential Credential
}

// OpenStore loads the store at path, which must exist (see CreateStore). It
// refuses a file that group or others may read, with an error that says how
// to fix it, and reports a malformed line with its number.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, now: time.Now}
	d, info, err := readStoreFile(path)
	if err != nil {
		return nil, err
	}
	s.state.Store(&storeState{users: d.users(), info: info})
	s.nextCheck = s.now().Add(StoreCheckInterval)
	return s, nil
}

// CreateStore opens the store at path, first creating it empty (mode 0600,
// with a comment explaining the format) if it does not exist: what
// `conclave user add` needs on first use.
func CreateStore(path string) (*Store, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		unlock, err := lockStoreFile(path)
		if err != nil {
			return nil, err
		}
		if _, err = os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			_, err = writeFileAtomic(path, []byte(storeHeader))
		} else {
			err = nil // created meanwhile by another writer, or an Lstat error OpenStore reports
		}
		unlock()
		if err != nil {
			return nil, err
		}
	}
	return OpenStore(path)
}

const storeHeader = `# conclave credential store: one user a line, never a password.
# name:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>:<roles>[:<topics>]
# Change it with ` + "`conclave user add|del|passwd|roles|topics`" + `; keep it mode 0600.
`

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// LookupCredential returns user's credential. The result shares memory with
// the store and must not be modified.
func (s *Store) LookupCredential(user string) (Credential, bool) {
	s.maybeCheck()
	c, ok := s.state.Load().users[user]
	return c, ok
}

// List returns every user, sorted by name.
func (s *Store) List() []StoreUser {
	s.maybeCheck()
	users := s.state.Load().users
	out := make([]StoreUser, 0, len(users))
	for name, c := range users {
		out = append(out, StoreUser{Name: name, Credential: c.clone()})
	}
	slices.SortFunc(out, func(a, b StoreUser) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Reload reads the file now if it changed since it was last loaded. On error
// the credentials already loaded stay in use.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadLocked()
}

// ReloadError returns why the last automatic reload or Reload failed, or nil
// if it succeeded (or the file has not changed since).
func (s *Store) ReloadError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadErr
}

// maybeCheck reloads the file if StoreCheckInterval has passed since the last
// look and it changed. A write or reload in progress makes it skip.
func (s *Store) maybeCheck() {
	now := s.now()
	s.mu.Lock()
	due := !now.Before(s.nextCheck)
	if due {
		s.nextCheck = now.Add(StoreCheckInterval)
	}
	s.mu.Unlock()
	if !due || !s.reloadMu.TryLock() {
		return
	}
	defer s.reloadMu.Unlock()
	_ = s.reloadLocked()
}

func (s *Store) reloadLocked() error {
	err := s.reloadIfChanged()
	s.mu.Lock()
	s.reloadErr = err
	s.mu.Unlock()
	return err
}

func (s *Store) reloadIfChanged() error {
	info, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("auth: credential store: %w (keeping the credentials loaded before)", err)
	}
	if old := s.state.Load().info; sameStamp(old, info) {
		return nil
	}
	d, info, err := readStoreFile(s.path)
	if err != nil {
		return fmt.Errorf("%w (keeping the credentials loaded before)", err)
	}
	s.state.Store(&storeState{users: d.users(), info: info})
	return nil
}

func sameStamp(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.Mode() == b.Mode() && a.ModTime().Equal(b.ModTime())
}

// Add adds user name with cred. Errors wrap ErrUserExists, ErrSCRAMUserName,
// ErrUnknownRole, ErrSCRAMVerifier or ErrBadStore.
func (s *Store) Add(name string, cred Credential) error {
	if err := checkStoreEntry(name, cred); err != nil {
		return err
	}
	return s.modify(func(d *storeDoc) error {
		if d.find(name) >= 0 {
			return fmt.Errorf("%w: %q", ErrUserExists, name)
		}
		d.lines = append(d.lines, storeLine{text: formatStoreLine(name, cred), name: name, cred: cred.clone()})
		return nil
	})
}

// Update replaces user name's credential with what fn returns, given the
// current one. fn runs under the store's lock, so a change made meanwhile by
// another writer is neither lost nor overwritten unseen: to change a
// password and keep the roles,
//
//	err := store.Update(name, func(old auth.Credential) (auth.Credential, error) {
//		c, err := auth.NewCredential(password, 0, nil)
//		c.Roles = old.Roles
//		return c, err
//	})
//
// Errors wrap ErrNoSuchUser, fn's error, or those of Add.
func (s *Store) Update(name string, fn func(Credential) (Credential, error)) error {
	if err := CheckUserName(name); err != nil {
		return err
	}
	return s.modify(func(d *storeDoc) error {
		i := d.find(name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
		}
		cred, err := fn(d.lines[i].cred.clone())
		if err != nil {
			return err
		}
		if err := checkStoreEntry(name, cred); err != nil {
			return err
		}
		d.lines[i] = storeLine{text: formatStoreLine(name, cred), name: name, cred: cred.clone()}
		return nil
	})
}

// Delete removes user name. The error wraps ErrNoSuchUser if it is absent.
func (s *Store) Delete(name string) error {
	if err := CheckUserName(name); err != nil {
		return err
	}
	return s.modify(func(d *storeDoc) error {
		i := d.find(name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
		}
		d.lines = slices.Delete(d.lines, i, i+1)
		return nil
	})
}

// modify runs a read-modify-write of the file under the advisory lock and
// installs the result.
func (s *Store) modify(fn func(*storeDoc) error) error {
	unlock, err := lockStoreFile(s.path)
	if err != nil {
		return err
	}
	defer unlock()
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	d, _, err := readStoreFile(s.path)
	if err != nil {
		return err
	}
	if err := fn(d); err != nil {
		return err
	}
	info, err := writeFileAtomic(s.path, d.bytes())
	if err != nil {
		return err
	}
	s.state.Store(&storeState{users: d.users(), info: info})
	s.mu.Lock()
	s.reloadErr = nil
	s.mu.Unlock()
	return nil
}

func checkStoreEntry(name string, c Credential) error {
	if err := CheckUserName(name); err != nil {
		return err
	}
	return c.check()
}

// readStoreFile reads and parses the store, refusing a file others can read.
func readStoreFile(path string) (*storeDoc, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("auth: credential store: %w (create it with `conclave user add`)", err)
		}
		return nil, nil, fmt.Errorf("auth: credential store: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: credential store: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%w: %s is not a regular file", ErrBadStore, path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		abs, _ := filepath.Abs(path)
		return nil, nil, fmt.Errorf("%w: %s has mode %04o, readable or writable by group or others; run `chmod 600 %s`",
			ErrBadStore, path, perm, abs)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStoreSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: credential store %s: %w", path, err)
	}
	if len(data) > maxStoreSize {
		return nil, nil, fmt.Errorf("%w: %s is over %d MiB; is it the right file?", ErrBadStore, path, maxStoreSize>>20)
	}
	d, err := parseStore(path, data)
	if err != nil {
		return nil, nil, err
	}
	return d, info, nil
}

// storeDoc is the file as lines, so that writes keep comments and order.
type storeDoc struct {
	lines []storeLine
}

// storeLine is a line of the file; name is empty for a comment or blank line.
type storeLine struct {
	text string
	name string
	cred Credential
}

func parseStore(path string, data []byte) (*storeDoc, error) {
	text := string(data)
	text = strings.TrimSuffix(text, "\n")
	d := &storeDoc{}
	if text == "" {
		return d, nil
	}
	seen := make(map[string]int)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			d.lines = append(d.lines, storeLine{text: line})
			continue
		}
		name, cred, err := parseStoreLine(trimmed)
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %w", ErrBadStore, path, n, err)
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: %s line %d: user %q already defined on line %d", ErrBadStore, path, n, name, prev)
		}
		seen[name] = n
		d.lines = append(d.lines, storeLine{text: line, name: name, cred: cred})
	}
	return d, nil
}

// parseStoreLine parses one user line (without comment or surrounding
// space): name:SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>:roles,
// optionally followed by :topics.
func parseStoreLine(line string) (string, Credential, error) {
	name, rest, ok := strings.Cut(line, ":")
	if !ok {
		return "", Credential{}, fmt.Errorf("%w: want %s", ErrSCRAMVerifier, storeLineForm)
	}
	if err := CheckUserName(name); err != nil {
		return "", Credential{}, err
	}
	// The verifier holds exactly two ':' (base64 has none), the roles follow
	// a third and the optional topic rules a fourth.
	parts := strings.Split(rest, ":")
	switch {
	case len(parts) == 3:
		return "", Credential{}, fmt.Errorf("%w: user %q: no roles field (end the line with ':' for no roles)", ErrSCRAMVerifier, name)
	case len(parts) != 4 && len(parts) != 5:
		return "", Credential{}, fmt.Errorf("%w: user %q: want %s", ErrSCRAMVerifier, name, storeLineForm)
	}
	cred, err := ParseVerifier(strings.Join(parts[:3], ":"))
	if err != nil {
		return "", Credential{}, fmt.Errorf("user %q: %w", name, err)
	}
	cred.Roles, err = ParseRoles(parts[3])
	if err != nil {
		return "", Credential{}, fmt.Errorf("user %q: %w", name, err)
	}
	if len(parts) == 5 {
		if parts[4] == "" {
			return "", Credential{}, fmt.Errorf("%w: user %q: empty topics field (leave it out, with its ':', to allow every topic)", ErrTopicRule, name)
		}
		if cred.Topics, err = ParseTopicRules(parts[4]); err != nil {
			return "", Credential{}, fmt.Errorf("user %q: %w", name, err)
		}
	}
	return name, cred, nil
}

// storeLineForm is a store line's grammar, for errors.
const storeLineForm = "name:" + SCRAMMechanism + "$<iterations>:<salt>$<StoredKey>:<ServerKey>:<roles>[:<topics>]"

// formatStoreLine is parseStoreLine's inverse. A line without topic rules
// has no topics field, as before they existed.
func formatStoreLine(name string, c Credential) string {
	line := name + ":" + FormatVerifier(c) + ":" + strings.Join(c.Roles, ",")
	if len(c.Topics) > 0 {
		line += ":" + c.Topics.String()
	}
	return line
}

func (d *storeDoc) find(name string) int {
	return slices.IndexFunc(d.lines, func(l storeLine) bool { return l.name == name })
}

func (d *storeDoc) users() map[string]Credential {
	m := make(map[string]Credential)
	for _, l := range d.lines {
		if l.name != "" {
			m[l.name] = l.cred
		}
	}
	return m
}

func (d *storeDoc) bytes() []byte {
	var b bytes.Buffer
	for _, l := range d.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeFileAtomic replaces path with data: a 0600 temporary file in the same
// directory, written, fsynced and renamed over path, then the directory
// fsynced. It returns the new file's FileInfo.
func writeFileAtomic(path string, data []byte) (fs.FileInfo, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("auth: credential store: %w", err)
	}
	tmp := f.Name()
	var info fs.FileInfo
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600) // CreateTemp's mode already, whatever the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		info, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("auth: write credential store %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("auth: write credential store %s: sync directory: %w", path, err)
	}
	return info, nil
}
