package recipe

func (r *Recipe) parseMergekit(top []kv) error {
	return errAt(r.File, posOf(top[0].k), "mergekit configurations: not yet")
}
