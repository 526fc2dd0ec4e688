"""CarePlans: materialising scheduled CarePlan activities into Task resources (a later issue)."""
