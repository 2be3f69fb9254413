"""A fake training pipeline that honours the pipeline contract, for tests of the orchestrator."""
