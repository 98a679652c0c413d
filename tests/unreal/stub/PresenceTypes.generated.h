// Empty: Unreal's header tool generates this; the stand-in build needs none.
