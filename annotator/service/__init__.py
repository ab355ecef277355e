"""What pages and jobs call with a workspace: labeling, accounts, jobs, the dashboard. Imports core, data and media."""
