package twoway

// A first sync (the state knows no folder pair: a new pair, or a lost
// state) has no record anywhere, so nothing planned in one folder pair
// depends on another: no move (a record gone from one folder), no rename
// (a known folder vanished), no deletion for the guard to weigh. Such a
// run lists, plans and applies one folder pair at a time and drops its
// listing before it lists the next, so its memory follows the largest
// folder instead of the account (the two-way sync issue: a 200,000-message
// account in <= 96 MiB); a run that must plan across folders (moves,
// renames, the guard's shares) lists them all first.

// byFolder reports whether the run goes folder by folder: a real run
// (a dry run returns the whole plan), nothing journaled, no folder known.
func (r *run) byFolder(pending []intent) bool {
	return !r.opt.DryRun && len(pending) == 0 && len(r.st.Folders()) == 0
}

// syncByFolder lists, plans and applies each folder pair in turn, then
// ends the run as apply does. Result.Plan holds every folder's plan, each
// without its Copies (they point into the listing it dropped; Result.Side
// counts them).
func (r *run) syncByFolder() error {
	scoped, exists, _ := r.scope(nil)
	plan := &Plan{}
	r.res.Plan = plan
	if err := r.applyStart(plan); err != nil {
		return err
	}
	for _, name := range scoped {
		f, err := r.listFolder(name, exists, false)
		if err != nil {
			return err
		}
		fplan := MakePlan([]Folder{f}, r.opt.Plan)
		r.notePlan(fplan)
		plan.HeldBack = plan.HeldBack || fplan.HeldBack
		plan.Warnings = append(plan.Warnings, fplan.Warnings...)
		for i := range fplan.Folders {
			fp := &fplan.Folders[i]
			if err := r.applyOne(fp); err != nil {
				return err
			}
			r.dropListing(fp)
			plan.Folders = append(plan.Folders, *fp)
		}
	}
	if err := r.applyEnd(plan); err != nil {
		return err
	}
	if plan.HeldBack {
		return ErrHeldBack
	}
	return nil
}

// dropListing lets go of applied folder plan fp's listings: the run's
// (run.env reads them while the folder is applied) and its copies'.
func (r *run) dropListing(fp *FolderPlan) {
	for s := range r.msgs {
		delete(r.msgs[s], fp.Name)
	}
	fp.Copies = nil
}
