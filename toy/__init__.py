"""toy: the Gaussian-mixture study of the DLC paper (Section 3, Figure 2, Appendix C).

Self-contained: depends on numpy/scipy/scikit-learn/torch/matplotlib only, never on `dlc` or `bench`.
"""
