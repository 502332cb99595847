"""Commands that run several runs, or run again over a finished one: analyze, sweep, study, transfer."""
