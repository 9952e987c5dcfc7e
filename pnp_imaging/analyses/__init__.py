"""Analyses of generative priors on a lab's own data: dynamical regimes of diffusion models
(speciation and collapse times, the cloning experiment; Biroli, Bonnaire, De Bortoli, Mézard 2024),
and the digits toolkit (data split, classifier, sample evaluation) they are measured with."""
