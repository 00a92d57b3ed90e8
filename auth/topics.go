package auth

import (
	"errors"
	"fmt"
	"strings"
)

// ErrTopicRule reports a topic rule that cannot be parsed.
var ErrTopicRule = errors.New("auth: bad topic rule")

// maxTopicRules bounds a user's rule list, and maxTopicRuleLen one rule, so
// that a store line stays a line.
const (
	maxTopicRules   = 64
	maxTopicRuleLen = 256
)

// TopicRules limit the topics a user may send to and serve, on top of what
// its roles allow. Each rule is a pattern that allows the topics it matches,
// or "!" and a pattern that denies them. A pattern is a topic, or a prefix
// followed by "*" that matches every topic starting with the prefix ("*"
// alone matches all). A topic is allowed when no deny rule matches it and
// either there are no allow rules or one of them matches: "jobs.*,!jobs.admin"
// allows jobs.resize and refuses jobs.admin and logs.
//
// Rules may not contain ',', ':', spaces or control characters, which the
// store file and the CLI use as separators; such topics are reached by a
// wildcard.
type TopicRules []string

// ParseTopicRules parses a comma-separated rule list as the store file and
// the CLI's -topics flag write it. An empty string is no rules: every topic.
// Errors wrap ErrTopicRule.
func ParseTopicRules(s string) (TopicRules, error) {
	if s == "" {
		return nil, nil
	}
	r := TopicRules(strings.Split(s, ","))
	if err := r.Check(); err != nil {
		return nil, err
	}
	return r, nil
}

// Check reports a rule that is empty, too long, repeated, has a '*' other
// than at its end or a separator character, or a list that is too long.
// Errors wrap ErrTopicRule.
func (r TopicRules) Check() error {
	if len(r) > maxTopicRules {
		return fmt.Errorf("%w: %d rules, at most %d", ErrTopicRule, len(r), maxTopicRules)
	}
	for i, rule := range r {
		pat := strings.TrimPrefix(rule, "!")
		switch {
		case pat == "":
			return fmt.Errorf("%w: empty rule (want a topic, prefix* or !pattern)", ErrTopicRule)
		case len(rule) > maxTopicRuleLen:
			return fmt.Errorf("%w: a rule of %d bytes, at most %d", ErrTopicRule, len(rule), maxTopicRuleLen)
		case strings.IndexByte(pat[:len(pat)-1], '*') >= 0 || strings.HasPrefix(pat, "!"):
			return fmt.Errorf("%w %q: '*' may only end a pattern and '!' only start a rule", ErrTopicRule, rule)
		case strings.ContainsFunc(rule, func(c rune) bool { return c <= ' ' || c == ',' || c == ':' || c == 0x7f }):
			return fmt.Errorf("%w %q: no spaces, commas, colons or control characters", ErrTopicRule, rule)
		}
		for _, prev := range r[:i] {
			if prev == rule {
				return fmt.Errorf("%w %q: listed twice", ErrTopicRule, rule)
			}
		}
	}
	return nil
}

// Allows reports whether the rules allow topic.
func (r TopicRules) Allows(topic string) bool {
	allowed, anyAllow := false, false
	for _, rule := range r {
		if pat, deny := strings.CutPrefix(rule, "!"); deny {
			if matchTopic(pat, topic) {
				return false
			}
		} else {
			anyAllow = true
			allowed = allowed || matchTopic(pat, topic)
		}
	}
	return allowed || !anyAllow
}

// String returns the rules in ParseTopicRules's form.
func (r TopicRules) String() string { return strings.Join(r, ",") }

func matchTopic(pattern, topic string) bool {
	if prefix, wild := strings.CutSuffix(pattern, "*"); wild {
		return strings.HasPrefix(topic, prefix)
	}
	return pattern == topic
}
