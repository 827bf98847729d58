"""The heavy edges: the vLLM engine, its Ray actors, model files. Import submodules as needed."""
