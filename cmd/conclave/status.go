package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/seed0811993b/conclave/auth"
	"github.com/seed0811993b/conclave/node"
)

const statusUsage = `usage: conclave status -connect ADDR [-key FILE] [-user NAME] [-json] [-timeout 10s]

Connects to a member's link address as a client (it does not join the gossip),
asks that member for its status and prints its members and its per-peer
counters. A user with the monitor role is enough.

flags:
  -connect ADDR  a member's link address, host:port (required)
  -key FILE      the cluster key file, when the member asks for the key
  -user NAME     log in as this user; the password is read from the terminal
                 without echo, or as one line of stdin when it is not a terminal
  -json          print the status as JSON
  -timeout D     give up after D (default 10s)
`

// statusCommand runs `conclave status`.
func statusCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	connect := fs.String("connect", "", "")
	keyFile := fs.String("key", "", "")
	user := fs.String("user", "", "")
	asJSON := fs.Bool("json", false, "")
	timeout := fs.Duration("timeout", 10*time.Second, "")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, statusUsage)
		return nil
	}
	switch {
	case err != nil:
		return usagef("status: %v (see `conclave status -h`)", err)
	case *connect == "":
		return usagef("status: -connect ADDR is required (a member's link address; see `conclave status -h`)")
	case *keyFile == "" && *user == "":
		return usagef("status: give -key FILE, -user NAME or both: the member must know who asks")
	case len(pos) > 0:
		return usagef("usage: conclave status -connect ADDR [-key FILE] [-user NAME] [-json] [-timeout 10s]")
	}
	cfg := node.Config{Connect: []string{*connect}, User: *user}
	if *keyFile != "" {
		if cfg.Key, err = auth.LoadKeyFile(*keyFile); err != nil {
			return err
		}
	}
	if *user != "" {
		if err := auth.CheckUserName(*user); err != nil {
			return usagef("status: -user: %v", err)
		}
		pw, err := readPassword(ctx, stdin, stderr, fmt.Sprintf("Password for %s: ", *user), false)
		if err != nil {
			return err
		}
		cfg.Password = auth.Password(pw)
	}
	var b [4]byte
	rand.Read(b[:])
	cfg.Name = "conclave-status-" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	target := ""
	for _, m := range n.Members() {
		if m.ID != n.ID() {
			target = m.Name // the one member a client connected to
		}
	}
	if target == "" {
		return fmt.Errorf("status: connected to %s, but it named no member", *connect)
	}
	st, err := n.Status(ctx, target)
	if err != nil {
		return fmt.Errorf("status of %s: %w", target, err)
	}
	// The member counts this very connection among its peers: noise here.
	st.Peers = slices.DeleteFunc(st.Peers, func(p node.PeerStats) bool { return p.ID == n.ID() })
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return printStatus(stdout, st)
}

// printStatus writes st as two tables.
func printStatus(w io.Writer, st node.Status) error {
	fmt.Fprintf(w, "node %s (%s): %d members\n\n", st.Name, st.ID, len(st.Members))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tID\tLINK ADDRESS\tTAGS")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.ID, m.Addr, formatTags(m.Tags))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PEER\tLINK\tSENT\tRESENT\tRECEIVED\tDUPLICATES\tUNACKED")
	for _, p := range st.Peers {
		link := "down"
		if p.LinkUp {
			link = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d (%d B)\n", p.Name, link, p.Sent, p.Resent, p.Received, p.Duplicates, p.Queued, p.QueuedBytes)
	}
	return tw.Flush()
}

func formatTags(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	kv := make([]string, 0, len(tags))
	for k, v := range tags {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}
