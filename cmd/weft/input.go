package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/remote"
)

// inputUsage is the help of the flag every command that reads checkpoints has, and of
// remote inputs.
const inputUsage = `  --token T        Hugging Face access token for hf:// inputs (default: HF_TOKEN, else the
                   token file 'hf auth login' writes; those stay out of the process list)

Inputs may also be hf://ORG/NAME[@REVISION][/PATH] (a Hugging Face Hub repository, a folder
or a file in it) or https:// URLs of single files, read by range requests as needed;
HF_ENDPOINT names a Hub mirror.
`

// inputUsageHF is inputUsage for commands whose --token means something else.
const inputUsageHF = `  --hf-token T     Hugging Face access token for hf:// inputs (default: HF_TOKEN, else the
                   token file 'hf auth login' writes; those stay out of the process list)

Inputs may also be hf://ORG/NAME[@REVISION][/PATH] (a Hugging Face Hub repository, a folder
or a file in it) or https:// URLs of single files, read by range requests as needed;
HF_ENDPOINT names a Hub mirror.
`

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
func (in *inputFlags) add(ctx context.Context, fs *flag.FlagSet, e *env) {
	in.ctx, in.e = ctx, e
	in.flag = "hf-token"
	fs.StringVar(&in.token, "hf-token", "", "Hugging Face access token for hf:// inputs")
	if fs.Lookup("token") == nil {
		in.flag = "token"
		fs.StringVar(&in.token, "token", "", "Hugging Face access token for hf:// inputs")
	}
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
