"""Streamlit helpers shared by the pages: session state, the sidebar, Plotly figures."""
