// Package safetensors reads and lays out safetensors checkpoints: single .safetensors files
// and Hugging Face directories sharded with model.safetensors.index.json.
//
// The reader parses and validates a file's header as strictly as the reference Rust crate
// (huggingface/safetensors) does, and a little more: duplicate keys, which the format's
// specification forbids but serde silently accepts, are refused. Tensor data is never read
// by this package; each tensor is handed out as a section reader over the open file.
//
// The writer side computes a Layout from tensor descriptions alone: every output file's
// header bytes and size, and the absolute offset of every tensor's data, so that an engine
// can write the data with WriteAt in any order. Sharding follows huggingface_hub's
// split_state_dict_into_shards, which transformers' save_pretrained uses.
package safetensors
