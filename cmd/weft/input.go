package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/remote"
)

// inputFlags are the flags of every command that reads checkpoints: inputs may be local
// paths, hf://ORG/NAME[@REVISION][/PATH] names or https:// URLs.
type inputFlags struct {
	ctx    context.Context
	token  string
	flag   string // the flag's name: token, or hf-token where --token means something else
	e      *env
	client *remote.Client
}

// add registers --hf-token, and --token when the command has no flag of that name (call it
// after the command's own flags).
func (in *inputFlags) add(fs *flagSet) {
	fs.section("Input flags")
	help := "Hugging Face access token `T` for hf:// inputs (default: HF_TOKEN, else the token file 'hf auth login' writes; those stay out of the process list). Inputs may be local paths, hf://ORG/NAME[@REVISION][/PATH] (a Hugging Face Hub repository, a folder or a file in it) or https:// URLs of single files, read by range requests as needed; HF_ENDPOINT names a Hub mirror"
	in.flag = "hf-token"
	if fs.Lookup("token") == nil {
		in.flag = "token"
		fs.StringVar(&in.token, "token", "", help)
		fs.alias("hf-token", "token")
		return
	}
	fs.StringVar(&in.token, "hf-token", "", help)
}

// bind gives the flags the command's context (an interrupt ends remote requests) and env
// (retries are reported on its stderr).
func (in *inputFlags) bind(ctx context.Context, e *env) {
	in.ctx, in.e = ctx, e
}

// remote returns the command's remote client, made on first use: the environment's
// endpoint and token, the token flag winning, retries reported on stderr.
func (in *inputFlags) remote() *remote.Client {
	if in.client == nil {
		o := remote.FromEnv()
		o.Context = in.ctx // an interrupt ends the requests in flight
		if in.token != "" {
			o.Token = in.token
		}
		if in.e != nil {
			w := in.e.stderr
			o.Logf = func(format string, args ...any) { fmt.Fprintf(w, "weft: "+format+"\n", args...) }
		}
		in.client = remote.NewClient(o)
	}
	return in.client
}

// open opens an input checkpoint, local or remote.
func (in *inputFlags) open(path string) (*weft.Checkpoint, error) {
	var rc *remote.Client
	if remote.IsRemote(path) {
		rc = in.remote()
	}
	c, err := ckpt.OpenWith(path, rc)
	if errors.Is(err, remote.ErrAuth) {
		return nil, fmt.Errorf("%w (or give the token with --%s)", err, in.flag)
	}
	return c, err
}

// openAll opens every input checkpoint in order; close closes those opened (also after an
// error, when it returns the ones opened before it).
func (in *inputFlags) openAll(paths []string) (cs []*weft.Checkpoint, close func(), err error) {
	close = func() {
		for _, c := range cs {
			c.Close()
		}
	}
	for _, p := range paths {
		c, err := in.open(p)
		if err != nil {
			return cs, close, err
		}
		cs = append(cs, c)
	}
	return cs, close, nil
}
