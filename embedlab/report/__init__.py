"""Reports: compare runs over seeds with paired tests over queries; tables, figures, LEAF-run analysis."""
