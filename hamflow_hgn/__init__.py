"""hamflow_hgn: the Hamiltonian Generative Network (Toth et al., 2019), built on hamflow."""
