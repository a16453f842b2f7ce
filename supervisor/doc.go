// Package supervisor is the ingest parent: it starts worker and saver child
// processes, feeds them posts from HTTP or a file, routes batches from
// workers to savers, restarts children that die or hang without losing or
// double-counting anything, and drains everything in order on shutdown.
//
// # Where to read what
//
//	supervisor.go  Run and its phases, in order: open, start, serve, drain,
//	               report. The drain order is written down once, on drain.
//	tally.go       what a run did: the one tally of its counts (metrics,
//	               /status, the summary and the last log line read it), and
//	               the Report that Run returns
//	slot.go        a slot is one logical child (role, id) across its
//	               processes: its typed state, the list of allowed
//	               transitions, and runSlot, the one runner for workers
//	               and savers alike; children, every slot of a run and
//	               what their runners share
//	worker.go      the worker's part (an incarnation): posts held until a
//	               batch covers them, the credit window, re-dispatch and
//	               quarantine when it dies, its hang rule; workerHost,
//	               what it needs of the parent
//	saver.go       the saver's part: one batch part outstanding, accounting
//	               of acknowledgements, retry when the sink refuses;
//	               saverHost, what it needs of the parent
//	process.go     one child process: pipes, handshake, the stdout reader,
//	               stop and kill
//	batches.go     the batch queue between workers and savers
//	watchdog.go    hang detection
//	restart.go     backoff and the restart budget
//	http.go        every HTTP route of the parent, in one table, and what
//	               each request tells its connection's admission
//	listener.go    connection admission: a place only with a request head,
//	               room made at the cap, spare places, the body stall
//	reload.go      SIGHUP's token reloads, off the signal loop
//	intake.go      where the HTTP API puts posts: the post queue and the
//	               spool, adapted to writeapi's contract (its Refusal)
//	status.go      what the HTTP layer needs from the parent: /status and
//	               readiness
//	durable.go     the spool's side (--durability fsync): recovery at
//	               start, batches spooled before a saver sees them, the
//	               pump that reads posts back for the workers
//	input.go       --input: the feeder, resumed where a killed run
//	               stopped, and the summary (progress.go: how far it is)
//	spill.go       what a drain that ran out of time writes without a
//	               spool (--durability none), and --replay
//
// # Liveness apart from routing
//
// A child's stdout is read by a goroutine that never waits for anyone:
// heartbeats are recorded as they come, and a complete batch is pushed to
// the batch queue, which takes it whatever its length. So a child that is
// silent really is, and "alive" means only that its process has not exited
// (process.exited closes when cmd.Wait returns, independently of the
// pipes). The bound on memory is applied where it cannot stall a reader:
// a worker is fed only while fewer than batchLimit batches wait for a
// saver, and holds at most workerWindow posts it has not finished. A sink
// that stalls therefore stops the feeding and makes /readyz answer 503; it
// never makes a healthy child look hung.
//
// # Ownership
//
// Every goroutine has one owner that waits for it: Run owns the slot
// runners, the retiring incarnations and the watchdog through the
// children (children.wait), and the intake through parent.bg; each
// process owns its reader goroutines and its waiter (process.wait). A
// slot's runner is the only writer of its process's stdin.
package supervisor
