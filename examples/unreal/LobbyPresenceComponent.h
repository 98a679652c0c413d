// An actor component that shows how a game uses the Presence plugin from C++: it connects
// the local player, watches the lobby and logs presence changes. Blueprint graphs do the
// same with the subsystem's nodes and "Bind Event to On User Presence Changed".
// Not compiled in this repository (no Unreal Engine here); see bindings/unreal/README.md.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"

#include "LobbyPresenceComponent.generated.h"

UCLASS(ClassGroup = (Presence), meta = (BlueprintSpawnableComponent))
class ULobbyPresenceComponent : public UActorComponent
{
    GENERATED_BODY()

public:
    UPROPERTY(EditAnywhere, Category = "Presence")
    FString PlayerId = TEXT("player-1");

    UPROPERTY(EditAnywhere, Category = "Presence")
    FString LobbyId = TEXT("lobby:main");

protected:
    virtual void BeginPlay() override;
    virtual void EndPlay(const EEndPlayReason::Type Reason) override;

private:
    UFUNCTION()
    void HandlePresenceChanged(const FString& UserId, bool bOnline, const FString& Status, FDateTime LastActive);

    int64 ConnectionId = 0;
};
