"""dialoguellm's pure core (data model, labels, prompts, metrics) and the flows that move turns."""
