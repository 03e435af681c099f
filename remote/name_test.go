package remote

import "testing"

func TestParseName(t *testing.T) {
	for _, c := range []struct {
		in                   string
		repo, rev, path, str string
	}{
		{"hf://meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B", "", "", "hf://meta-llama/Llama-3.1-8B"},
		{"hf://org/name@v1.0", "org/name", "v1.0", "", "hf://org/name@v1.0"},
		{"hf://org/name@main/sub/model.gguf", "org/name", "main", "sub/model.gguf", "hf://org/name@main/sub/model.gguf"},
		{"hf://org/name/model.gguf", "org/name", "", "model.gguf", "hf://org/name/model.gguf"},
		{"hf://org/name@refs/pr/12/x.gguf", "org/name", "refs/pr/12", "x.gguf", "hf://org/name@refs/pr/12/x.gguf"},
		{"hf://org/name@refs%2Fpr%2F3", "org/name", "refs/pr/3", "", "hf://org/name@refs/pr/3"},
		{"hf://org/name@feature%2Fx/a", "org/name", "feature/x", "a", "hf://org/name@feature%2Fx/a"},
		{"hf://org/name/", "org/name", "", "", "hf://org/name"},
	} {
		n, err := ParseName(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !n.Hub || n.Repo != c.repo || n.Revision != c.rev || n.Path != c.path {
			t.Errorf("%s: got repo %q rev %q path %q", c.in, n.Repo, n.Revision, n.Path)
		}
		if n.String() != c.str {
			t.Errorf("%s: String() = %q, want %q", c.in, n.String(), c.str)
		}
	}
	for _, bad := range []string{"hf://", "hf://org", "hf://org/", "hf://org/na me", "hf://org/name@", "hf://org/name/../x", "hf://org/name/a//b", "hf://../x/y", "https://user:pw@host/x", "ftp://x/y"} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	n, err := ParseName("https://example.com/m/model.gguf?sig=abc#frag")
	if err != nil || n.Hub || n.URL.RawQuery != "sig=abc" {
		t.Fatalf("https name: %+v %v", n, err)
	}
	if s := n.String(); s != "https://example.com/m/model.gguf" {
		t.Errorf("redacted %q", s)
	}
}

func TestContentRange(t *testing.T) {
	for _, c := range []struct {
		s           string
		a, b, total int64
		ok          bool
	}{
		{"bytes 0-9/100", 0, 9, 100, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes 9-0/100", 0, 0, 0, false},
		{"bytes 0-100/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes -1-2/3", 0, 0, 0, false},
	} {
		a, b, total, ok := parseContentRange(c.s)
		if ok != c.ok || (ok && (a != c.a || b != c.b || total != c.total)) {
			t.Errorf("%q: %d %d %d %v", c.s, a, b, total, ok)
		}
	}
}

func TestTokenFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_HOME", dir)
	if tok := EnvToken(); tok != "" {
		t.Fatalf("token %q with nothing set", tok)
	}
	if err := writeFile(dir+"/token", "hf_file_token\n"); err != nil {
		t.Fatal(err)
	}
	if tok := EnvToken(); tok != "hf_file_token" {
		t.Fatalf("token file under HF_HOME: got %q", tok)
	}
	if err := writeFile(dir+"/other", "  hf_path_token "); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_TOKEN_PATH", dir+"/other")
	if tok := EnvToken(); tok != "hf_path_token" {
		t.Fatalf("HF_TOKEN_PATH: got %q", tok)
	}
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "hf_old")
	if tok := EnvToken(); tok != "hf_old" {
		t.Fatalf("HUGGING_FACE_HUB_TOKEN: got %q", tok)
	}
	t.Setenv("HF_TOKEN", "hf_env")
	if tok := EnvToken(); tok != "hf_env" {
		t.Fatalf("HF_TOKEN: got %q", tok)
	}
	t.Setenv("HF_ENDPOINT", "http://mirror.example/")
	if o := FromEnv(); o.Endpoint != "http://mirror.example/" || o.Token != "hf_env" {
		t.Fatalf("FromEnv: %+v", o)
	}
	if c := NewClient(FromEnv()); c.Endpoint() != "http://mirror.example" {
		t.Fatalf("endpoint %q", c.Endpoint())
	}
}
