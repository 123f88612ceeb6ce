#!/bin/bash
# What qsub submits for backend.kind: pbs (see src/adapters/schedulers/pbs.ts). It gives the job script
# the same contract as under Slurm, on PBS Pro / OpenPBS and on Torque alike:
#   - the working directory is the job's work tree: qsub ran there, and PBS puts that in PBS_O_WORKDIR
#     (Slurm's Torque wrappers leave it unset; there the job already starts in the work tree);
#   - SLURM_JOB_ID is the PBS job id ($PBS_JOBID, as qsub printed it) unless Slurm set it already, since
#     EESSI's scripts name their result files after it;
#   - stdout and stderr go to slurm-<id>.out in the work tree while the job runs.
# Then it runs the job script, HPCBOT_JOB_SCRIPT, passed with qsub -v.
set -u
cd "${PBS_O_WORKDIR:-.}" || exit 1
export SLURM_JOB_ID="${SLURM_JOB_ID:-${PBS_JOBID:?neither SLURM_JOB_ID nor PBS_JOBID is set}}"
exec >>"slurm-${SLURM_JOB_ID}.out" 2>&1
exec "${HPCBOT_JOB_SCRIPT:?HPCBOT_JOB_SCRIPT is not set}"
