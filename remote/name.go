package remote

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// IsRemote reports whether name is a remote checkpoint name: hf://ORG/NAME[@REVISION][/PATH],
// or an https:// (or http://) URL of a single file.
func IsRemote(name string) bool {
	low := strings.ToLower(name)
	return strings.HasPrefix(low, "hf://") || strings.HasPrefix(low, "https://") || strings.HasPrefix(low, "http://")
}

// Name is a parsed remote name.
type Name struct {
	// Hub is true for hf:// names, which name a Hugging Face Hub model repository.
	Hub bool
	// Repo is ORG/NAME; Revision the branch, tag or commit given after '@' ("" means main);
	// Path a file or folder inside the repository ("" is its root).
	Repo, Revision, Path string
	// URL is the URL of an https:// name.
	URL *url.URL
}

// specialRef matches the Hub revisions that contain a slash (pull requests and conversion
// branches), which may be written unescaped after '@'.
var specialRef = regexp.MustCompile(`^(refs/pr/\d+|refs/convert/\w+)(/|$)`)

// repoPart matches one element of a repository id, as the Hub allows them.
var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseName parses a remote name. hf:// names are hf://ORG/NAME[@REVISION][/PATH]; a
// revision that contains '/' is written escaped (refs%2Fpr%2F1) or as one of the Hub's
// special refs (refs/pr/N, refs/convert/NAME). https:// names are URLs of single files;
// credentials in them are refused (use a token instead).
func ParseName(s string) (Name, error) {
	low := strings.ToLower(s)
	if strings.HasPrefix(low, "https://") || strings.HasPrefix(low, "http://") {
		u, err := url.Parse(s)
		if err != nil {
			return Name{}, fmt.Errorf("remote: %q is not a valid URL: %v", s, err)
		}
		if u.Host == "" {
			return Name{}, fmt.Errorf("remote: %q has no host", s)
		}
		if u.User != nil {
			return Name{}, fmt.Errorf("remote: %s: credentials in URLs are not accepted (they would end up in messages and provenance)", Redact(u))
		}
		u.Fragment, u.RawFragment = "", ""
		return Name{URL: u}, nil
	}
	if !strings.HasPrefix(low, "hf://") {
		return Name{}, fmt.Errorf("remote: %q is not a remote name (hf://ORG/NAME or https://...)", s)
	}
	rest := s[len("hf://"):]
	bad := func(why string) (Name, error) {
		return Name{}, fmt.Errorf("remote: %q: %s; the form is hf://ORG/NAME[@REVISION][/PATH]", s, why)
	}
	// ORG/NAME, then optionally @REVISION, then optionally /PATH.
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return bad("no repository name after the organization")
	}
	org := rest[:slash]
	rest = rest[slash+1:]
	end := strings.IndexAny(rest, "@/")
	if end < 0 {
		end = len(rest)
	}
	n := Name{Hub: true, Repo: org + "/" + rest[:end]}
	if !repoPart.MatchString(org) || !repoPart.MatchString(rest[:end]) || strings.Contains(n.Repo, "..") {
		return bad(fmt.Sprintf("%q is not a repository id", n.Repo))
	}
	rest = rest[end:]
	if strings.HasPrefix(rest, "@") {
		rest = rest[1:]
		var rev string
		if m := specialRef.FindStringSubmatch(rest); m != nil {
			rev = m[1]
			rest = rest[len(rev):]
		} else {
			i := strings.IndexByte(rest, '/')
			if i < 0 {
				i = len(rest)
			}
			rev, rest = rest[:i], rest[i:]
			var err error
			if rev, err = url.PathUnescape(rev); err != nil {
				return bad(fmt.Sprintf("revision %q: %v", rev, err))
			}
		}
		if rev == "" {
			return bad("empty revision after '@'")
		}
		n.Revision = rev
	}
	p := strings.Trim(rest, "/")
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." {
			return bad(fmt.Sprintf("path %q has %q elements", p, el))
		}
	}
	if strings.Contains(p, "//") || strings.ContainsAny(p, "\\\x00") {
		return bad(fmt.Sprintf("path %q is not a plain path", p))
	}
	n.Path = p
	return n, nil
}

// String returns the name in its canonical form: hf://ORG/NAME[@REVISION][/PATH], or the
// URL without query or fragment.
func (n Name) String() string {
	if !n.Hub {
		if n.URL == nil {
			return ""
		}
		return Redact(n.URL)
	}
	s := "hf://" + n.Repo
	if n.Revision != "" {
		if specialRef.MatchString(n.Revision) {
			s += "@" + n.Revision
		} else {
			s += "@" + url.PathEscape(n.Revision)
		}
	}
	if n.Path != "" {
		s += "/" + n.Path
	}
	return s
}

// Redact returns u without credentials, query or fragment: what may be shown in messages
// and recorded in provenance (signed URLs carry their signature in the query).
func Redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery = "", false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// escapePath escapes each element of a slash-separated path for a URL.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, el := range parts {
		parts[i] = url.PathEscape(el)
	}
	return strings.Join(parts, "/")
}
