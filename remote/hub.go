package remote

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/weft-ml/weft/internal/ferr"
)

// commitRE matches a full commit id.
var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// maxTreeEntries bounds the listing of one repository.
const maxTreeEntries = 200_000

// resolveRevision asks the Hub which commit a revision of a repository is at.
func (c *Client) resolveRevision(ctx context.Context, n Name) (string, error) {
	rev := revName(n.Revision)
	u := c.o.Endpoint + "/api/models/" + n.Repo + "/revision/" + url.PathEscape(rev)
	var info struct {
		SHA string `json:"sha"`
	}
	t := target{display: n.String(), repo: n.Repo, rev: rev, hub: true}
	if _, err := c.getJSON(ctx, u, t, &info); err != nil {
		return "", err
	}
	if !commitRE.MatchString(info.SHA) {
		return "", ferr.New(ErrProtocol, "%s: unexpected response: the Hub gave %q as the commit of revision %s, not a commit id", n, cleanHeader(info.SHA), rev)
	}
	return info.SHA, nil
}

// treeEntry is one element of the Hub's tree listing.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// listTree lists every file and folder of a repository at a commit, following the
// listing's pages.
func (c *Client) listTree(ctx context.Context, n Name, commit string) ([]treeEntry, error) {
	u := c.o.Endpoint + "/api/models/" + n.Repo + "/tree/" + commit + "?recursive=true&expand=false"
	t := target{display: n.String(), repo: n.Repo, rev: revName(n.Revision), hub: true}
	var all []treeEntry
	for page := 0; u != ""; page++ {
		var ents []treeEntry
		hdr, err := c.getJSON(ctx, u, t, &ents)
		if err != nil {
			return nil, err
		}
		all = append(all, ents...)
		if len(all) > maxTreeEntries {
			return nil, fmt.Errorf("%s: the repository lists more than %d files", n, maxTreeEntries)
		}
		next, err := nextPage(hdr, u)
		if err != nil {
			return nil, ferr.New(ErrProtocol, "%s: unexpected response: %v", n, err)
		}
		if next != "" {
			nu, _ := url.Parse(next)
			if !c.sameHost(nu) {
				return nil, ferr.New(ErrProtocol, "%s: unexpected response: the listing's next page is on another host (%s)", n, nu.Host)
			}
		}
		u = next
	}
	return all, nil
}

// nextPage returns the absolute URL of a Link header's rel="next", or "".
func nextPage(h http.Header, base string) (string, error) {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.Index(part, ">")
			if end < 0 {
				continue
			}
			ref, params := part[1:end], part[end+1:]
			isNext := false
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Contains(" "+strings.Trim(v, `"`)+" ", " next ") {
					isNext = true
				}
			}
			if !isNext {
				continue
			}
			b, err := url.Parse(base)
			if err != nil {
				return "", err
			}
			r, err := url.Parse(ref)
			if err != nil {
				return "", fmt.Errorf("bad next-page link %q", cleanHeader(ref))
			}
			return b.ResolveReference(r).String(), nil
		}
	}
	return "", nil
}
