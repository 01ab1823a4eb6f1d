"""The running dispatcher: its runtime, the claim feeder, the senders, results, pacing waits,
retries, faxes in providers' hands, and the explanations of a letter's state."""
