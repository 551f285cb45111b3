/**
 * Whether this process is one rank of a launched job (`mpirun -np N qzo ...`), read from the
 * environment that the launcher sets, before any MPI library is loaded: a process started
 * without a launcher (or with one rank) runs alone, as qzo always has.
 *
 * Open MPI's mpirun sets OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}; other launchers
 * (MPICH's hydra, Slurm's PMI) set PMI_RANK/PMI_SIZE, which qzo recognises only to say that
 * its binding needs Open MPI.
 */

export interface LaunchedWorld {
  rank: number;
  size: number;
  /** Ranks on this machine, and this one's index among them (GPU choice, CPU threads). */
  localRank: number;
  localSize: number;
  launcher: "open-mpi" | "pmi";
}

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || !/^\d{1,9}$/.test(v)) return undefined;
  return Number(v);
}

/** The launcher's description of this process's place in the job, or undefined when it runs alone. */
export function launchedWorld(): LaunchedWorld | undefined {
  const ompiSize = envInt("OMPI_COMM_WORLD_SIZE");
  const ompiRank = envInt("OMPI_COMM_WORLD_RANK");
  if (ompiSize !== undefined && ompiRank !== undefined) {
    if (ompiSize <= 1) return undefined;
    return {
      rank: ompiRank,
      size: ompiSize,
      localRank: envInt("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
      localSize: envInt("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1,
      launcher: "open-mpi",
    };
  }
  const pmiSize = envInt("PMI_SIZE");
  const pmiRank = envInt("PMI_RANK");
  if (pmiSize !== undefined && pmiRank !== undefined && pmiSize > 1) {
    return { rank: pmiRank, size: pmiSize, localRank: 0, localSize: 1, launcher: "pmi" };
  }
  return undefined;
}

/** How many ranks share this machine (1 when the process runs alone): CPU threads are divided among them. */
export function localRanks(): number {
  return launchedWorld()?.localSize ?? 1;
}
