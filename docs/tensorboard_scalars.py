"""The scalars TensorBoard shows for one run, read back from its event files:

    python docs/tensorboard_scalars.py logs/RUN
"""
import sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

folder = Path(sys.argv[1])
found = {}
for path in sorted(folder.glob("events.out.tfevents.*")):
    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for tag in events.Tags()["scalars"]:
        found[tag] = events.Scalars(tag)
    for tag in events.Tags()["images"]:
        found[tag] = None
for tag, values in found.items():
    if values is None:
        print(f"{tag:<30} image")
    else:
        print(f"{tag:<30} {len(values):>2} points, last (step {values[-1].step}): {values[-1].value:.4f}")
