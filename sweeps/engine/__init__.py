"""The machinery that runs a paper's sweep (the scripts at the top of sweeps/ call cli.main).

    cli             the command line: the plan, the storage's lease, the cells run, the tables
                    printed; flags: the flags parsed (parse_args)
    settings        what the command line asked for, parsed once: a frozen Settings (one field per
                    flag, the --set items parsed) that every step reads
    preflight       the checks made before Ray starts: counts, configs, models, storage, resources
    nodes           the cluster (an address, a `ray start` here, or embedded), the connection to
                    it and what its nodes offer a trial; node_data: each dataset read once per
                    node
    in_flight       the cells in flight together: one CellControllers actor, a thread per cell;
                    relay: what they print, on the driver's console
    slots           the sweep's shared trial cap (a Slots actor); shared_slots: a cell's searcher
                    under it (SharedSlots); gpu_cap: --max-gpu-hours, checked there
    cell            one cell's run, start to its winner's evaluation (run_cell), and the winners
                    under a table's second selection rule (evaluate_capped_winners)
    tuner           one cell's Tune experiment: its Tuner, searcher and scheduler (tune_cell)
    searcher        what Optuna is told of a cell's trials (PruneAwareOptunaSearch)
    tune_record     Tune and Optuna kept one-to-one across a crash or a move (schedulers, orphans)
    trial           one trial: a configuration trained one epoch per step (TrainTrial)
    parquet_writer  the rows of a cell's trials, written as each ends (ParquetWriter)
    seeds           a winner trained again with other training seeds
    winners         a winner's evaluation on the test set and its sample grids
    status          a sweep's progress read from its storage (--status)
    cost            what a budget costs in epochs (ASHA, re-trainings, evaluations) and a list
                    schedule of it; estimate: --dry-run's estimate in hours, and the question
                    before a large sweep
    console         what the driver prints while cells run (progress lines from the storage) and
                    Ray's and Tune's own lines kept to their logs unless --verbose
    summary         the lines a sweep ends on: failures, differences, time, cost, where things are
    trackers        --log-to: W&B and MLflow fed each trial through Tune's callbacks
    provenance      the code and package versions a row records
    replay          a stored trial trained again, its curve compared (`python sweeps/replay.py`)
"""
