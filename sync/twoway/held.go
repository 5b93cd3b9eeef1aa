package twoway

// heldRecordsBudget bounds the records the state keeps loaded from a
// folder's listing to its apply, over all folders: within it, applying a
// changed folder does not read and parse its log a second time; beyond
// it, a folder is released at listing and read again at its apply, so a
// big account's memory stays bounded (docs/performance.md). A held record
// costs its map entry and struct (its strings are shared with the run's
// Base): some 200-400 bytes, so at most ~10-20 MiB for the budget.
const heldRecordsBudget = 50_000

// holdOrRelease keeps folder name's n records loaded in the state until
// its apply (applyOne releases it) while the records held stay within
// budget, and else releases them now: the run holds them as the folder's
// Base while it plans, and applying the folder reads them again.
func (r *run) holdOrRelease(name string, n int) error {
	budget := r.opt.heldBudget
	if budget == 0 {
		budget = heldRecordsBudget
	}
	if _, ok := r.held[name]; !ok && r.heldRecs+n <= budget {
		if r.held == nil {
			r.held = map[string]int{}
		}
		r.held[name] = n
		r.heldRecs += n
		return nil
	}
	return r.st.Release(name)
}

// unhold forgets that folder name's records are held (its apply released
// them): the budget is free for others.
func (r *run) unhold(name string) {
	r.heldRecs -= r.held[name]
	delete(r.held, name)
}
