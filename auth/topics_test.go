package auth

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestTopicRulesAllows(t *testing.T) {
	for _, tc := range []struct {
		rules   string
		allowed []string
		denied  []string
	}{
		{"", []string{"jobs", "anything", "$status"}, nil},
		{"jobs", []string{"jobs"}, []string{"jobs.x", "job", "logs"}},
		{"jobs.*", []string{"jobs.", "jobs.resize", "jobs.a.b"}, []string{"jobs", "logs.jobs.x"}},
		{"jobs.*,!jobs.admin", []string{"jobs.resize"}, []string{"jobs.admin", "logs"}},
		{"!secret.*", []string{"jobs", "secret"}, []string{"secret.keys", "secret."}},
		{"*,!*", nil, []string{"jobs", ""}},
		{"a,b*", []string{"a", "b", "bc"}, []string{"ab", "c"}},
	} {
		r, err := ParseTopicRules(tc.rules)
		if err != nil {
			t.Fatalf("ParseTopicRules(%q): %v", tc.rules, err)
		}
		if r.String() != tc.rules {
			t.Errorf("ParseTopicRules(%q).String() = %q", tc.rules, r)
		}
		for _, topic := range tc.allowed {
			if !r.Allows(topic) {
				t.Errorf("rules %q refuse %q", tc.rules, topic)
			}
		}
		for _, topic := range tc.denied {
			if r.Allows(topic) {
				t.Errorf("rules %q allow %q", tc.rules, topic)
			}
		}
	}
}

func TestTopicRulesRefused(t *testing.T) {
	long := strings.Repeat("x", maxTopicRuleLen+1)
	many := ""
	for i := 0; i <= maxTopicRules; i++ {
		many += "t" + strings.Repeat("x", i) + ","
	}
	many = strings.TrimSuffix(many, ",")
	for _, s := range []string{",", "a,", "!", "a*b", "**", "!!a", "a b", "a:b", "a\tb", "a\x7f", "a,a", long, many} {
		if _, err := ParseTopicRules(s); !errors.Is(err, ErrTopicRule) {
			t.Errorf("ParseTopicRules(%q) = %v, want ErrTopicRule", s, err)
		}
	}
}

func TestStoreKeepsTopicRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	s, err := CreateStore(path)
	if err != nil {
		t.Fatal(err)
	}
	c := scramCred(t, "pw")
	c.Roles = []string{RoleClient}
	c.Topics = TopicRules{"jobs.*", "!jobs.admin"}
	if err := s.Add("carol", c); err != nil {
		t.Fatal(err)
	}
	c.Topics = TopicRules{"a b"}
	if err := s.Add("dave", c); !errors.Is(err, ErrTopicRule) {
		t.Fatalf("Add with a bad rule: %v, want ErrTopicRule", err)
	}
	again, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := again.LookupCredential("carol")
	if !ok || got.Topics.String() != "jobs.*,!jobs.admin" || !got.Topics.Allows("jobs.x") || got.Topics.Allows("jobs.admin") {
		t.Fatalf("reopened store: carol = %v, %v", got, ok)
	}
	if !strings.Contains(got.String(), "topics [jobs.*,!jobs.admin]") {
		t.Errorf("Credential.String() = %q, want the topic rules", got)
	}
}
