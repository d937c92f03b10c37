//! `processpool`: runs tasks in `kairos worker` child processes (being built).
