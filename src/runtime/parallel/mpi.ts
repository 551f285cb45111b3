/**
 * The MPI world of a process that `mpirun` started, as a Communicator: the native addon's
 * binding (src/native/mpi.cc) loads Open MPI's libmpi at run time (QZO_MPI_LIB names another
 * file), so qzo without MPI installed works as before. Collectives are non-blocking MPI calls
 * polled between turns of the event loop: a rank that waits for the others still sees SIGINT
 * and SIGTERM, and gives up PEER_GRACE_MS after one when the collective cannot complete.
 */
import { loadNativeAddon, type NativeMpi } from "../../native/index.js";
import { QzoError } from "../../util/errors.js";
import { PEER_GRACE_MS, PeerLostError, type Communicator, type ReduceOp, type WaitOptions } from "./communicator.js";
import type { LaunchedWorld } from "./world.js";

/** Where Open MPI's library is looked for (the dynamic loader's search path). */
const LIBRARIES = ["libmpi.so.40", "libmpi.so"];

const tick = () => new Promise<void>((r) => setImmediate(r));

/** Connects to the job that launched this process; a one-line QzoError when MPI cannot be used. */
export function connectMpi(world: LaunchedWorld): Communicator {
  if (world.launcher !== "open-mpi") {
    throw new QzoError(`started by a launcher that sets PMI_RANK/PMI_SIZE (MPICH, Intel MPI or Slurm PMI); qzo's MPI binding supports Open MPI: start it with Open MPI's mpirun`);
  }
  const addon: NativeMpi = loadNativeAddon();
  const override = process.env["QZO_MPI_LIB"];
  let library: string;
  try {
    library = addon.mpiLoad(override ? [override] : LIBRARIES);
  } catch (e) {
    throw new QzoError(`started by mpirun (${world.size} ranks) but ${(e as Error).message}; install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) or set QZO_MPI_LIB`);
  }
  let info: { rank: number; size: number; version: string };
  try {
    info = addon.mpiInit();
  } catch (e) {
    throw new QzoError(`${library}: ${(e as Error).message}`);
  }
  if (info.rank !== world.rank || info.size !== world.size) {
    throw new QzoError(`MPI says rank ${info.rank} of ${info.size}, the launcher's environment rank ${world.rank} of ${world.size}: the job was started by another MPI than ${library}`);
  }
  let sent = 0;
  let finalized = false;

  const wait = async <T>(id: number, what: string, o: WaitOptions = {}): Promise<T> => {
    let since: number | undefined;
    for (;;) {
      const r = addon.mpiTest(id);
      if (r !== null) return r as T;
      if (since === undefined && o.interrupted?.()) {
        since = performance.now();
        o.onInterrupted?.();
      }
      if (since !== undefined && performance.now() - since > PEER_GRACE_MS) {
        throw new PeerLostError(`asked to stop while waiting for the other ranks (${what}), which did not answer within ${PEER_GRACE_MS} ms: another rank has ended`);
      }
      await tick();
    }
  };

  return {
    rank: info.rank,
    size: info.size,
    description: `${info.version.split(",")[0]}, ${info.size} ranks`,
    get bytesSent() {
      return sent;
    },
    allreduce(values: Float64Array, op: ReduceOp, o?: WaitOptions): Promise<Float64Array> {
      sent += values.byteLength;
      return wait<Float64Array>(addon.mpiIallreduce(values, op), `a ${op} of ${values.length} values`, o);
    },
    async broadcast(bytes: Uint8Array, root: number, o?: WaitOptions): Promise<Uint8Array> {
      // The length first: the other ranks do not know it.
      const len = new Uint8Array(new Float64Array([info.rank === root ? bytes.length : 0]).buffer);
      const got = await wait<Uint8Array>(addon.mpiIbcast(len, root), "a broadcast", o);
      const n = new Float64Array(got.buffer, got.byteOffset, 1)[0]!;
      if (info.rank === root) sent += 8 + bytes.length;
      return wait<Uint8Array>(addon.mpiIbcast(info.rank === root ? bytes : new Uint8Array(n), root), "a broadcast", o);
    },
    finalize() {
      if (finalized) return;
      finalized = true;
      addon.mpiFinalize();
    },
  };
}
