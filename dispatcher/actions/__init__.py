"""Actions: the model, their files, effective status and planning, staff controls."""
