// What every bench does to the environment its commands inherit, imported first.
//
// NODE_EXTRA_CA_CERTS makes every node process parse the certificates it names before any JavaScript runs
// (OpenSSL's PEM decoding, in node::crypto::UseExtraCaCerts). The machine the team measures on sets it to the
// system's 140-certificate bundle, which costs each node start 32 ms of a 104 ms `node -e 0` (perf: 30-36 % of
// the samples), and qemu-img nothing. A user's shell rarely has it, so the benches' commands run without it:
// ratios against node's own start and against qemu-img are then the ones a user sees. BENCH_KEEP_NODE_ENV=1
// keeps the environment as it is.
if (process.env.NODE_EXTRA_CA_CERTS !== undefined && !process.env.BENCH_KEEP_NODE_ENV) {
  console.log(`note: NODE_EXTRA_CA_CERTS (${process.env.NODE_EXTRA_CA_CERTS}) is unset for the timed commands: it adds ~30 ms of certificate parsing to every node start (BENCH_KEEP_NODE_ENV=1 keeps it)`);
  delete process.env.NODE_EXTRA_CA_CERTS;
}
