"""What every training stage shares (pre-training, adversarial), one concern per module:

    stage_data    the data parameters, the dataset, the split (built, or read from split.csv)
    stage_record  the record parameters, run record, checkpoint keys, the facts a record states,
                  finding a finished pre-training run
    stage_eval    the periodic validation callback, the final evaluation, HO3D's submission

A stage = one run record ``results/runs/<run_id>/{config.json, metrics.json, history.csv,
split.csv}``. This module gathers their names for callers.
"""
from handlib.train.stage_data import (  # noqa: F401
    DataParams,
    build_split,
    check_image_size,
    default_motion_source,
    load_data,
    read_split,
    same_split,
    split_seed_of,
)
from handlib.train.stage_eval import HO3D_SERVER, SMOKE_TEST_FRAMES, final_evaluation, subset_rows, val_eval_fn  # noqa: F401
from handlib.train.stage_record import (  # noqa: F401
    VARY,
    RecordParams,
    checkpoint_block,
    checkpoint_root,
    code_hash,
    data_identity,
    find_pretrain,
    load_pretrained,
    make_record,
    run_facts,
)
