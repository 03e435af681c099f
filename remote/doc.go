// Package remote reads checkpoints where they are published: hf://ORG/NAME[@REVISION][/PATH]
// names of Hugging Face Hub model repositories, and https:// URLs of single files. A name
// opens as a weft.Source (a Repo), so the format readers read remote files through the same
// code as local ones, with io.ReaderAt over HTTP range requests.
//
// The Hub's revision is resolved to a commit once, and every file is read at that commit;
// each file's ETag is pinned, so a file that changes during a run is an error, never mixed
// data. Reads fetch headers in small growing blocks and tensor data in parallel ranges
// ahead of sequential readers, over one pool of reused connections, in bounded memory.
// Transient failures (429 with its Retry-After, 5xx, timeouts, resets, stalls, bodies cut
// short) are retried with exponential backoff and jitter, resuming a range where it broke;
// a wrong Content-Range is an error. The token (Options.Token, HF_TOKEN, or the file
// huggingface_hub writes) is sent only to the Hub's own host, never after a redirect to
// another host, and never appears in messages.
package remote
