"""Temporal activities over platforms, providers and the agent."""

from tamma.activities.issue import AgentConfig, IssueActivities

__all__ = ["AgentConfig", "IssueActivities"]
