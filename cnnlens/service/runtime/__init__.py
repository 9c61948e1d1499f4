"""What runs the service's model work: the state the app holds (`state`), one worker thread
per model (`worker`), the budget every request is checked against before it is queued
(`budget`) and the signal that stops work nobody waits for (`abort`)."""
