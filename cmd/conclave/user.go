package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/seed0811993b/conclave/auth"
)

// usersFileEnv names the environment variable that gives the credential
// store when -store does not.
const usersFileEnv = "CONCLAVE_USERS_FILE"

const userUsage = `usage: conclave user [-store FILE] COMMAND [ARGS]

commands:
  add NAME [-roles worker] [-topics RULES] [-iterations 600000]
                 add a user, creating the store (mode 0600) if it does not exist
  list           list the users: name, roles, topic rules, iterations (never
                 their keys)
  del NAME       delete a user
  passwd NAME [-iterations 600000]
                 give a user a new password (and credential), keeping its roles
                 and topic rules
  roles NAME LIST
                 set a user's roles (comma-separated; "" for none), keeping its password
  topics NAME RULES
                 set a user's topic rules ("" for every topic), keeping the rest

flags:
  -store FILE    the credential store; default $CONCLAVE_USERS_FILE. One of the
                 two is required: there is no default file
  -roles LIST    add: comma-separated roles among admin, worker, client, monitor;
                 default worker, "" for none
  -topics RULES  add: the topics the user may send to and serve, comma-separated:
                 a topic, prefix* for every topic starting with prefix, and
                 !pattern to refuse what pattern matches ("jobs.*,!jobs.admin");
                 default "", every topic its roles allow
  -iterations N  add, passwd: PBKDF2 iterations of the new credential, 4096 to
                 10000000; default 600000

add and passwd read the password from the terminal without echo, twice, after
a prompt on stderr; when stdin is not a terminal, they read one line of stdin
(without its newline) and do not prompt. A password is never an argument.
Flags may come before or after NAME. Exit status: 0 done, 1 failed, 2 a
usage error (nothing was read or changed).
`

// usagef returns a usage error: a command line that cannot be run, for
// which main exits with status 2.
func usagef(format string, args ...any) error {
	return exitError{2, fmt.Sprintf(format, args...)}
}

// userCommand runs `conclave user ...`, reading passwords from stdin.
func userCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	top := flag.NewFlagSet("user", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	store := top.String("store", os.Getenv(usersFileEnv), "")
	if err := top.Parse(args); err != nil {
		return flagError(err, stdout)
	}
	if top.NArg() == 0 {
		fmt.Fprint(stderr, userUsage)
		return usagef("user: no command (add, list, del, passwd, roles or topics)")
	}
	sub, args := top.Arg(0), top.Args()[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(store, "store", *store, "") // also after the command
	var roles, topics *string
	var iterations *int
	switch sub {
	case "add":
		roles = fs.String("roles", auth.RoleWorker, "")
		topics = fs.String("topics", "", "")
		iterations = fs.Int("iterations", auth.DefaultSCRAMIterations, "")
	case "passwd":
		iterations = fs.Int("iterations", auth.DefaultSCRAMIterations, "")
	case "list", "del", "roles", "topics":
	case "help":
		fmt.Fprint(stdout, userUsage)
		return nil
	default:
		return usagef("user: unknown command %q: want add, list, del, passwd, roles or topics (see `conclave user -h`)", sub)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err, stdout)
	}
	want := 1
	switch sub {
	case "list":
		want = 0
	case "roles", "topics":
		want = 2
	}
	if len(pos) != want {
		synopsis := map[string]string{"add": "add NAME [-roles LIST] [-topics RULES] [-iterations N]", "list": "list",
			"del": "del NAME", "passwd": "passwd NAME [-iterations N]", "roles": "roles NAME LIST", "topics": "topics NAME RULES"}[sub]
		return usagef("usage: conclave user [-store FILE] %s", synopsis)
	}
	var name string
	if want >= 1 {
		name = pos[0]
		if err := auth.CheckUserName(name); err != nil {
			return usagef("%v", err)
		}
	}
	if *store == "" {
		return usagef("no credential store: pass -store FILE or set %s (`conclave user -store FILE add NAME` creates one)", usersFileEnv)
	}
	if iterations != nil && (*iterations < auth.MinSCRAMIterations || *iterations > auth.MaxSCRAMIterations) {
		return usagef("-iterations %d: want %d to %d", *iterations, auth.MinSCRAMIterations, auth.MaxSCRAMIterations)
	}
	u := &userCmd{ctx: ctx, path: *store, stdin: stdin, stdout: stdout, stderr: stderr}
	switch sub {
	case "add":
		r, err := auth.ParseRoles(*roles)
		if err != nil {
			return usagef("-roles: %v", err)
		}
		t, err := auth.ParseTopicRules(*topics)
		if err != nil {
			return usagef("-topics: %v", err)
		}
		return u.add(name, r, t, *iterations)
	case "list":
		return u.list()
	case "del":
		return u.del(name)
	case "roles":
		r, err := auth.ParseRoles(pos[1])
		if err != nil {
			return usagef("roles: %v", err)
		}
		return u.setRoles(name, r)
	case "topics":
		t, err := auth.ParseTopicRules(pos[1])
		if err != nil {
			return usagef("topics: %v", err)
		}
		return u.setTopics(name, t)
	default:
		return u.passwd(name, *iterations)
	}
}

// flagError turns a flag parsing error into a usage error, or -h into the
// usage text.
func flagError(err error, stdout io.Writer) error {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, userUsage)
		return nil
	}
	return usagef("user: %v (see `conclave user -h`)", err)
}

// parseInterspersed parses fs's flags wherever they are among args and
// returns the other arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// userCmd is one `conclave user` run on the store at path.
type userCmd struct {
	ctx            context.Context
	path           string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// open opens the existing store.
func (u *userCmd) open() (*auth.Store, error) {
	s, err := auth.OpenStore(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no credential store %s: the file does not exist (`conclave user -store %s add NAME` creates it)", u.path, u.path)
	}
	return s, err
}

func (u *userCmd) add(name string, roles []string, topics auth.TopicRules, iterations int) error {
	// Refuse what would fail before asking for a password, without creating
	// the store yet: a mistyped password leaves no empty file behind.
	if _, err := os.Lstat(u.path); err == nil {
		s, err := u.open()
		if err != nil {
			return err
		}
		if _, ok := s.LookupCredential(name); ok {
			return u.exists(name)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("credential store: %w", err)
	} else if dir := filepath.Dir(u.path); !isDir(dir) {
		return fmt.Errorf("cannot create the credential store %s: %s is not a directory", u.path, dir)
	}
	cred, err := u.newCredential(fmt.Sprintf("Password for %s: ", name), iterations)
	if err != nil {
		return err
	}
	cred.Roles, cred.Topics = roles, topics
	s, err := auth.CreateStore(u.path)
	if err != nil {
		return err
	}
	if err := s.Add(name, cred); errors.Is(err, auth.ErrUserExists) {
		return u.exists(name)
	} else if err != nil {
		return err
	}
	scope := ""
	if len(topics) > 0 {
		scope = ", topics " + topics.String()
	}
	fmt.Fprintf(u.stdout, "conclave: added user %s (roles %s%s, %d iterations) to %s\n", name, roleList(roles), scope, iterations, u.path)
	return nil
}

func (u *userCmd) exists(name string) error {
	return fmt.Errorf("user %q already exists in %s (change its password with `conclave user passwd %s`)", name, u.path, name)
}

func (u *userCmd) noSuchUser(name string) error {
	return fmt.Errorf("no user %q in %s", name, u.path)
}

func (u *userCmd) list() error {
	s, err := u.open()
	if err != nil {
		return err
	}
	users := s.List()
	if len(users) == 0 {
		fmt.Fprintf(u.stderr, "conclave: no users in %s\n", u.path)
		return nil
	}
	tw := tabwriter.NewWriter(u.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tTOPICS\tITERATIONS")
	for _, user := range users {
		c := user.Credential
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", user.Name, roleList(c.Roles), topicList(c.Topics), c.Iterations)
	}
	return tw.Flush()
}

func (u *userCmd) del(name string) error {
	s, err := u.open()
	if err != nil {
		return err
	}
	if err := s.Delete(name); errors.Is(err, auth.ErrNoSuchUser) {
		return u.noSuchUser(name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(u.stdout, "conclave: deleted user %s from %s\n", name, u.path)
	return nil
}

func (u *userCmd) passwd(name string, iterations int) error {
	s, err := u.open()
	if err != nil {
		return err
	}
	if _, ok := s.LookupCredential(name); !ok {
		return u.noSuchUser(name)
	}
	cred, err := u.newCredential(fmt.Sprintf("New password for %s: ", name), iterations)
	if err != nil {
		return err
	}
	var roles []string
	err = s.Update(name, func(old auth.Credential) (auth.Credential, error) {
		roles = old.Roles
		c := cred
		c.Roles, c.Topics = old.Roles, old.Topics // as they are now, under the store's lock
		return c, nil
	})
	if errors.Is(err, auth.ErrNoSuchUser) {
		return u.noSuchUser(name) // deleted while we asked for the password
	} else if err != nil {
		return err
	}
	fmt.Fprintf(u.stdout, "conclave: changed the password of %s (roles %s, %d iterations) in %s\n", name, roleList(roles), iterations, u.path)
	return nil
}

// setRoles replaces a user's roles, keeping the rest.
func (u *userCmd) setRoles(name string, roles []string) error {
	return u.change(name, func(c *auth.Credential) { c.Roles = roles },
		fmt.Sprintf("%s now has roles %s", name, roleList(roles)))
}

// setTopics replaces a user's topic rules, keeping the rest.
func (u *userCmd) setTopics(name string, topics auth.TopicRules) error {
	return u.change(name, func(c *auth.Credential) { c.Topics = topics },
		fmt.Sprintf("%s may now use topics %s", name, topicList(topics)))
}

// change applies set to a user's credential under the store's lock and
// reports done.
func (u *userCmd) change(name string, set func(*auth.Credential), done string) error {
	s, err := u.open()
	if err != nil {
		return err
	}
	err = s.Update(name, func(old auth.Credential) (auth.Credential, error) {
		set(&old)
		return old, nil
	})
	if errors.Is(err, auth.ErrNoSuchUser) {
		return u.noSuchUser(name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(u.stdout, "conclave: %s in %s\n", done, u.path)
	return nil
}

// newCredential reads a new password (twice from a terminal) and derives its
// credential.
func (u *userCmd) newCredential(prompt string, iterations int) (auth.Credential, error) {
	if u.ctx.Err() != nil {
		return auth.Credential{}, errInterrupted
	}
	pw, err := readPassword(u.ctx, u.stdin, u.stderr, prompt, true)
	if err != nil {
		return auth.Credential{}, err
	}
	cred, err := auth.NewCredential(pw, iterations, nil)
	if err != nil {
		return auth.Credential{}, err
	}
	if err := u.ctx.Err(); err != nil {
		return auth.Credential{}, errInterrupted
	}
	return cred, nil
}

func roleList(roles []string) string {
	if len(roles) == 0 {
		return "-"
	}
	return strings.Join(roles, ",")
}

// topicList shows topic rules, "*" for none (every topic).
func topicList(t auth.TopicRules) string {
	if len(t) == 0 {
		return "*"
	}
	return t.String()
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
